//! Command-line arguments (clap derive).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default controller endpoint: what `fnctl up` listens on.
pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:9670";
/// Default `fnctl up --listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9670";
/// Default `fnctl up --rest-listen`.
pub const DEFAULT_REST_LISTEN: &str = "127.0.0.1:9680";
/// Default `fnctl up --http-listen`: the HTTP gateway (function URLs, HTTP APIs).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9690";
/// Where `fnctl up` (default data dir of deploy/up.sh) keeps the first admin key.
pub const DEFAULT_CREDENTIALS: &str = "/var/lib/lamina/controller/auth/admin-credentials.json";

#[derive(Debug, Parser)]
#[command(
    name = "fnctl",
    version,
    about = "Manage and invoke functions on a Lamina cluster",
    after_help = "Exit status: 0 success, 1 error (usage, API or transport), 2 the invoked function \
                  returned an error."
)]
pub struct Cli {
    /// Controller endpoint
    #[arg(long, global = true, env = "FNCTL_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Credentials file {"accessKeyId","secretAccessKey"} (else FNCTL_ACCESS_KEY_ID +
    /// FNCTL_SECRET_ACCESS_KEY, else /var/lib/lamina/controller/auth/admin-credentials.json if readable)
    #[arg(long, global = true, env = "FNCTL_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// CA certificate (PEM) that an https endpoint's certificate must chain to (else the
    /// `tls/ca.pem` of the `fnctl up` data directory holding the credentials file)
    #[arg(long, global = true, env = "FNCTL_CA")]
    pub ca: Option<PathBuf>,
    /// Output format of commands that print objects
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogType {
    None,
    Tail,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a single-node cluster (controller + one worker) in the foreground
    Up(UpArgs),
    /// Create a function
    Create(CreateArgs),
    /// Replace a function's code
    UpdateCode(UpdateCodeArgs),
    /// Change a function's configuration (fields not given keep their value)
    UpdateConfig(UpdateConfigArgs),
    /// Show one function (or one of its versions or aliases: --qualifier)
    Get {
        name: String,
        /// A version number or an alias name: show that version's configuration
        #[arg(long, default_value = "")]
        qualifier: String,
    },
    /// List functions
    #[command(alias = "ls")]
    List,
    /// Delete a function with its versions and aliases (or one version: --qualifier)
    #[command(alias = "rm")]
    Delete {
        name: String,
        /// A version number: delete only that version
        #[arg(long, default_value = "")]
        qualifier: String,
    },
    /// Publish $LATEST as a new version (or show the newest version when nothing changed)
    Publish(crate::versions::PublishArgs),
    /// List a function's versions ($LATEST first)
    Versions { name: String },
    /// A function's aliases: create, update, get, list, delete
    #[command(subcommand)]
    Alias(crate::versions::AliasCommand),
    /// A function's reserved concurrency: put, get, delete
    #[command(subcommand)]
    Concurrency(crate::concurrency::ConcurrencyCommand),
    /// The cluster-wide concurrency limit, what is unreserved and what runs now
    Account,
    /// Provisioned concurrency of a version or alias: put, get, delete, list
    #[command(subcommand)]
    Provisioned(crate::concurrency::ProvisionedCommand),
    /// Layers: publish, list, versions, get, delete
    #[command(subcommand)]
    Layer(crate::layers::LayerCommand),
    /// Function URLs: create, get, update, delete, list
    #[command(subcommand)]
    Url(crate::gateway::UrlCommand),
    /// A function's resource-based policy: add, remove, get (Lambda's AddPermission, ...)
    #[command(subcommand)]
    Permission(crate::permission::PermissionCommand),
    /// HTTP APIs (API Gateway style): create, list, get, delete, and their routes (api route ...)
    #[command(subcommand)]
    Api(crate::gateway::ApiCommand),
    /// VPCs: create, list, get, delete, attach-netns, detach-netns, attachments
    #[command(subcommand)]
    Vpc(crate::network::VpcCommand),
    /// Subnets of a VPC: create, list, get, delete
    #[command(subcommand)]
    Subnet(crate::network::SubnetCommand),
    /// Security groups: create, list, get, delete, authorize-/revoke-ingress|egress
    #[command(subcommand)]
    Sg(crate::network::SgCommand),
    /// List the workers the controller knows
    Workers,
    /// Invoke a function and print its response
    Invoke(InvokeArgs),
    /// Print a function's logs
    Logs(LogsArgs),
    /// Show or replace a function's asynchronous invocation settings
    #[command(subcommand)]
    EventConfig(EventConfigCommand),
    /// Show asynchronous invocation records
    #[command(subcommand)]
    Invocation(InvocationCommand),
    /// List a function's asynchronous invocations, newest first
    Invocations {
        name: String,
        /// At most this many (default 100)
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Lamina's dead-letter queues: list, show, redrive
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Access keys: create-key, list, revoke, key policies (admin keys, or by `iam:` policy)
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Execution roles: create, get, update, delete, list (admin keys, or by `iam:` policy)
    #[command(subcommand)]
    Role(crate::role::RoleCommand),
    /// Print a shell completion script
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the controller's database and the worker's state (created if missing)
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address the controller listens on
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Address of the controller's Lambda-compatible REST API (boto3, the AWS CLI)
    #[arg(long, default_value = DEFAULT_REST_LISTEN)]
    pub rest_listen: String,
    /// Address of the controller's HTTP gateway: function URLs and HTTP APIs (public traffic)
    #[arg(long, default_value = DEFAULT_HTTP_LISTEN)]
    pub http_listen: String,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Create an access key; its secret is printed once (`-o json`: {"accessKeyId","secretAccessKey"})
    CreateKey {
        /// What the key is for
        #[arg(long, default_value = "")]
        description: String,
        /// The key may manage access keys too (and is allowed everything: no policy needed)
        #[arg(long)]
        admin: bool,
        /// A file with the key's IAM policy document (`-`: stdin); without one a non-admin key
        /// may do nothing
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// List access keys (never their secrets)
    #[command(alias = "ls")]
    List,
    /// Revoke an access key: the controller refuses what it signs from now on
    Revoke { access_key_id: String },
    /// Replace an access key's IAM policy with the document in FILE (`-`: stdin)
    PutPolicy {
        access_key_id: String,
        /// The policy document's file (`-`: stdin)
        #[arg(required_unless_present = "delete", conflicts_with = "delete")]
        file: Option<PathBuf>,
        /// Remove the key's policy instead (a non-admin key may then do nothing)
        #[arg(long)]
        delete: bool,
    },
    /// Print an access key's IAM policy document
    GetPolicy { access_key_id: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// python3.11 | nodejs20.x | provided (optional with --image: the image brings its runtime)
    #[arg(long, default_value = "", required_unless_present = "image")]
    pub runtime: String,
    /// file.function (ignored by provided)
    #[arg(long, default_value = "")]
    pub handler: String,
    /// A directory (zipped for you) or a zip file
    #[arg(long, required_unless_present = "image", conflicts_with = "image")]
    pub code: Option<PathBuf>,
    #[command(flatten)]
    pub image: crate::images::ImageArgs,
    /// Layer version ARNs, comma-separated (at most 5), unpacked in this order under /opt
    #[arg(long, value_delimiter = ',', value_name = "ARN,...")]
    pub layers: Vec<String>,
    /// Attach the function to a VPC: its subnets (one VPC), comma-separated
    #[arg(long, value_delimiter = ',', value_name = "SUBNET,...")]
    pub subnets: Option<Vec<String>>,
    /// The security groups of its interfaces, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "SG,...")]
    pub security_groups: Option<Vec<String>>,
    /// Memory in MB (128..10240; default 128)
    #[arg(long)]
    pub memory: Option<u32>,
    /// Timeout in seconds (1..900; default 3)
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Size of /tmp in MB (512..10240; default 512)
    #[arg(long)]
    pub ephemeral_storage: Option<u32>,
    /// Environment variable K=V (repeatable)
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Execution role: a role NAME (`fnctl role`) or an IAM role ARN; its sandboxes get
    /// short-lived credentials limited to the role's policy
    #[arg(long, value_name = "NAME|ARN", value_parser = crate::role::parse_role)]
    pub role: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateCodeArgs {
    pub name: String,
    /// A directory (zipped for you) or a zip file
    #[arg(long, required_unless_present = "image", conflicts_with = "image")]
    pub code: Option<PathBuf>,
    /// An image function's new image: an OCI image layout directory (tarred for you) or an OCI /
    /// docker save archive
    #[arg(long)]
    pub image: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpdateConfigArgs {
    pub name: String,
    #[command(flatten)]
    pub image_config: crate::images::ImageConfigArgs,
    #[arg(long)]
    pub memory: Option<u32>,
    #[arg(long)]
    pub timeout: Option<u32>,
    #[arg(long)]
    pub ephemeral_storage: Option<u32>,
    #[arg(long)]
    pub handler: Option<String>,
    #[arg(long)]
    pub runtime: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Environment variable K=V (repeatable); given at all, it replaces the whole environment
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Remove every environment variable
    #[arg(long, conflicts_with = "env")]
    pub clear_env: bool,
    /// Replace the layers: layer version ARNs, comma-separated (at most 5)
    #[arg(long, value_delimiter = ',', value_name = "ARN,...")]
    pub layers: Option<Vec<String>>,
    /// Remove every layer
    #[arg(long, conflicts_with = "layers")]
    pub clear_layers: bool,
    /// Replace the VPC subnets (one VPC), comma-separated; '' detaches the function from its VPC
    #[arg(long, value_delimiter = ',', value_name = "SUBNET,...")]
    pub subnets: Option<Vec<String>>,
    /// Replace the security groups, comma-separated (with --subnets)
    #[arg(long, value_delimiter = ',', value_name = "SG,...")]
    pub security_groups: Option<Vec<String>>,
    /// Replace the execution role: a role NAME or an IAM role ARN ('' removes it)
    #[arg(long, value_name = "NAME|ARN", value_parser = crate::role::parse_role)]
    pub role: Option<String>,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    pub name: String,
    /// Event as JSON text (default {})
    #[arg(long, conflicts_with = "payload_file")]
    pub payload: Option<String>,
    /// File holding the JSON event ("-" reads standard input)
    #[arg(long)]
    pub payload_file: Option<PathBuf>,
    /// Version or alias
    #[arg(long, default_value = "")]
    pub qualifier: String,
    /// tail: print the last 4 KB of the invocation's log to stderr
    #[arg(long, value_enum, ignore_case = true, default_value_t = LogType::None)]
    pub log_type: LogType,
    /// Validate the request without running the function
    #[arg(long)]
    pub dry_run: bool,
    /// Client context as JSON text, passed to the runtime
    #[arg(long)]
    pub client_context: Option<String>,
    /// Queue the event (invocation type Event) and print its request id
    #[arg(long = "async", conflicts_with_all = ["dry_run", "log_type", "client_context"])]
    pub is_async: bool,
    /// Stream the response: print each chunk as the function sends it (response streaming)
    #[arg(long, conflicts_with_all = ["is_async", "dry_run"])]
    pub stream: bool,
    /// With --async: a repeat with the same key within the controller's window returns the first
    /// request id and queues nothing
    #[arg(long, requires = "is_async")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EventConfigCommand {
    /// Replace the settings (flags not given take the defaults: 2 retries, 21600 s, no success
    /// destination, failures to dlq:default)
    Put(EventConfigPutArgs),
    /// Show the settings
    Get { name: String },
}

#[derive(Debug, Args)]
pub struct EventConfigPutArgs {
    pub name: String,
    /// Retries after a function error (0..2)
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=2))]
    pub max_retries: Option<u32>,
    /// Maximum event age in seconds (60..21600)
    #[arg(long, value_parser = clap::value_parser!(u32).range(60..=21600))]
    pub max_age: Option<u32>,
    /// Destination of success records: function:NAME or dlq:NAME
    #[arg(long, value_name = "DEST", value_parser = parse_destination)]
    pub on_success: Option<String>,
    /// Destination of failures: function:NAME, dlq:NAME or none (drop)
    #[arg(long, value_name = "DEST", value_parser = parse_failure_destination)]
    pub on_failure: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum InvocationCommand {
    /// Show one asynchronous invocation by request id
    Get { request_id: String },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead-letter queues and their message counts
    List,
    /// Show the messages of a queue (oldest first)
    Show {
        queue: String,
        /// Only messages with a sequence number greater than N
        #[arg(long, value_name = "N", default_value_t = 0)]
        after_seq: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Queue messages again as new events of their function and remove them from the queue
    Redrive {
        queue: String,
        /// Only this message (repeatable; default: every message)
        #[arg(long = "seq", value_name = "N")]
        seqs: Vec<u64>,
    },
}

/// `function:NAME` or `dlq:NAME`.
pub fn parse_destination(s: &str) -> Result<String, String> {
    lamina_proto::validate::destination("--on-success", s)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            "--on-success must be `function:NAME` or `dlq:NAME`, got \"\"".to_string()
        })?;
    Ok(s.to_string())
}

/// `function:NAME`, `dlq:NAME` or `none`.
pub fn parse_failure_destination(s: &str) -> Result<String, String> {
    if s == "none" {
        return Ok(s.to_string());
    }
    lamina_proto::validate::destination("--on-failure", s)
        .map_err(|e| format!("{e}; or `none` to drop failed events"))?
        .ok_or_else(|| {
            "--on-failure must be `function:NAME`, `dlq:NAME` or `none`, got \"\"".to_string()
        })?;
    Ok(s.to_string())
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub name: String,
    /// Keep polling for new events until interrupted
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only events with a sequence number greater than N
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub since_seq: u64,
}

/// Parses `K=V`; the value may contain `=`.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("--env {s:?} has an empty name; use K=V")),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Err(format!(
            "--env {s:?} has no '='; use K=V (V may be empty: K=)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fnctl").chain(args.iter().copied()))
    }

    #[test]
    fn env_value_may_contain_equals() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("EMPTY=").unwrap(), ("EMPTY".into(), "".into()));
    }

    #[test]
    fn env_without_equals_is_an_error() {
        let err = parse_env("KEY").unwrap_err();
        assert!(err.contains("--env") && err.contains("K=V"), "{err}");
        assert!(parse_env("=v").is_err());
        let err = parse(&[
            "create",
            "f",
            "--runtime",
            "provided",
            "--code",
            ".",
            "--env",
            "KEY",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("has no '='"), "{err}");
    }

    #[test]
    fn create_parses_everything() {
        let cli = parse(&[
            "--endpoint",
            "http://h:1",
            "create",
            "f",
            "--runtime",
            "python3.11",
            "--handler",
            "app.h",
            "--code",
            "dir",
            "--memory",
            "256",
            "--timeout",
            "10",
            "--ephemeral-storage",
            "1024",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--description",
            "d",
        ])
        .unwrap();
        assert_eq!(cli.endpoint, "http://h:1");
        assert_eq!(cli.output, Output::Table);
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.name, "f");
        assert_eq!(c.runtime, "python3.11");
        assert_eq!(c.handler, "app.h");
        assert_eq!(c.code, Some(PathBuf::from("dir")));
        assert_eq!(
            (c.memory, c.timeout, c.ephemeral_storage),
            (Some(256), Some(10), Some(1024))
        );
        assert_eq!(
            c.env,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(c.description, "d");
    }

    #[test]
    fn output_is_global_and_endpoint_defaults() {
        let cli = parse(&["get", "f", "-o", "json"]).unwrap();
        assert_eq!(cli.output, Output::Json);
        if std::env::var_os("FNCTL_ENDPOINT").is_none() {
            assert_eq!(cli.endpoint, DEFAULT_ENDPOINT);
        }
        assert!(parse(&["-o", "xml", "list"]).is_err());
    }

    #[test]
    fn invoke_payload_and_file_conflict() {
        assert!(parse(&["invoke", "f", "--payload", "{}", "--payload-file", "x"]).is_err());
        let cli = parse(&["invoke", "f", "--log-type", "Tail", "--dry-run"]).unwrap();
        let Command::Invoke(i) = cli.command else {
            panic!("not invoke")
        };
        assert_eq!(i.log_type, LogType::Tail);
        assert!(i.dry_run);
        assert!(i.payload.is_none());
    }

    #[test]
    fn up_requires_data_dir() {
        assert!(parse(&["up"]).is_err());
        let cli = parse(&["up", "--data-dir", "/tmp/x"]).unwrap();
        let Command::Up(u) = cli.command else {
            panic!("not up")
        };
        assert_eq!(u.listen, DEFAULT_LISTEN);
        assert_eq!(u.http_listen, DEFAULT_HTTP_LISTEN);
        let cli = parse(&[
            "up",
            "--data-dir",
            "/tmp/x",
            "--http-listen",
            "0.0.0.0:8080",
        ])
        .unwrap();
        let Command::Up(u) = cli.command else {
            panic!("not up")
        };
        assert_eq!(u.http_listen, "0.0.0.0:8080");
    }

    #[test]
    fn async_flags_parse_and_validate() {
        let cli = parse(&["invoke", "f", "--async", "--idempotency-key", "k"]).unwrap();
        let Command::Invoke(i) = cli.command else {
            panic!("not invoke")
        };
        assert!(i.is_async);
        assert_eq!(i.idempotency_key.as_deref(), Some("k"));
        assert!(parse(&["invoke", "f", "--idempotency-key", "k"]).is_err());
        assert!(parse(&["invoke", "f", "--async", "--dry-run"]).is_err());
        let cli = parse(&[
            "event-config",
            "put",
            "f",
            "--max-retries",
            "0",
            "--max-age",
            "60",
            "--on-success",
            "function:g",
            "--on-failure",
            "dlq:errors",
        ])
        .unwrap();
        let Command::EventConfig(EventConfigCommand::Put(p)) = cli.command else {
            panic!("not event-config put")
        };
        assert_eq!((p.max_retries, p.max_age), (Some(0), Some(60)));
        assert_eq!(p.on_success.as_deref(), Some("function:g"));
        assert_eq!(p.on_failure.as_deref(), Some("dlq:errors"));
        assert!(parse(&["event-config", "put", "f", "--max-retries", "3"]).is_err());
        assert!(parse(&["event-config", "put", "f", "--max-age", "59"]).is_err());
        let err = parse(&["event-config", "put", "f", "--on-failure", "sqs:q"]).unwrap_err();
        assert!(
            err.to_string().contains("`function:NAME` or `dlq:NAME`"),
            "{err}"
        );
        assert!(parse(&["event-config", "put", "f", "--on-failure", "none"]).is_ok());
        assert!(parse(&["event-config", "put", "f", "--on-success", "none"]).is_err());
        let cli = parse(&["dlq", "redrive", "q", "--seq", "1", "--seq", "3"]).unwrap();
        let Command::Dlq(DlqCommand::Redrive { queue, seqs }) = cli.command else {
            panic!("not dlq redrive")
        };
        assert_eq!((queue.as_str(), seqs), ("q", vec![1, 3]));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
