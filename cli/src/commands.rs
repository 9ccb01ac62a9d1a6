//! The client-side commands: everything but `up`.
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use lamina_client::{v1, Client, Credentials};

use crate::args::{
    Command, CreateArgs, InvokeArgs, LogType, LogsArgs, Output, UpdateCodeArgs, UpdateConfigArgs,
};
use crate::events;
use crate::output;
use crate::terminal;
use crate::Outcome;

/// How often `fnctl logs --follow` polls.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);
/// Events asked for per `GetLogs` call.
const LOG_PAGE: u32 = 1000;

fn print(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

/// Where the controller is and what signs the requests.
pub struct Conn {
    pub endpoint: String,
    pub credentials: Option<Credentials>,
    /// The CA an https endpoint's certificate must chain to.
    pub ca: Option<PathBuf>,
}

impl Conn {
    async fn client(&self) -> anyhow::Result<Client> {
        Ok(
            Client::connect_tls(&self.endpoint, self.credentials.clone(), self.ca.as_deref())
                .await?,
        )
    }
}

/// The CA certificate: `--ca`/`FNCTL_CA`, else `DATA_DIR/tls/ca.pem` of the `fnctl up` data
/// directory whose `controller/auth/` holds the credentials file (`--credentials`, else the
/// default one), or a `ca.pem` beside that file, when it exists.
pub fn resolve_ca(ca: Option<PathBuf>, credentials: Option<&Path>) -> Option<PathBuf> {
    if ca.is_some() {
        return ca;
    }
    let credentials = credentials.unwrap_or(Path::new(crate::args::DEFAULT_CREDENTIALS));
    let auth = credentials.parent()?;
    let beside = auth.join("ca.pem");
    let data_dir = auth.parent().and_then(Path::parent);
    [Some(beside), data_dir.map(|d| d.join("tls").join("ca.pem"))]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

/// The credentials: `--credentials`/`FNCTL_CREDENTIALS`, else `FNCTL_ACCESS_KEY_ID` +
/// `FNCTL_SECRET_ACCESS_KEY`, else the default file of `fnctl up` when readable, else none.
pub fn resolve_credentials(file: Option<&Path>) -> anyhow::Result<Option<Credentials>> {
    if let Some(path) = file {
        return Ok(Some(lamina_client::credentials::load_file(path)?));
    }
    let id = std::env::var("FNCTL_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var("FNCTL_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => {
            return Ok(Some(Credentials {
                access_key_id,
                secret_access_key,
            }))
        }
        (None, None) => {}
        _ => {
            return Err(anyhow!(
            "set both FNCTL_ACCESS_KEY_ID and FNCTL_SECRET_ACCESS_KEY, or use --credentials FILE"
        ))
        }
    }
    let default = Path::new(crate::args::DEFAULT_CREDENTIALS);
    match lamina_client::credentials::load_file(default) {
        Ok(c) => Ok(Some(c)),
        Err(_) => Ok(None),
    }
}

/// Runs a command that talks to the controller.
pub async fn run(conn: &Conn, output: Output, command: Command) -> anyhow::Result<Outcome> {
    // Local checks first: a bad --payload or --code is reported without dialing the controller.
    match command {
        Command::Create(args) => {
            let zip = crate::images::load_code_or_image(
                args.code.as_deref(),
                args.image.image.as_deref(),
            )?;
            let client = conn.client().await?;
            create(&client, args, zip, output).await
        }
        Command::Layer(cmd) => {
            let client = conn.client().await?;
            print(&crate::layers::run(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Url(cmd) => {
            let client = conn.client().await?;
            print(&crate::gateway::run_url(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Permission(cmd) => {
            let client = conn.client().await?;
            print(&crate::permission::run(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Api(cmd) => {
            let client = conn.client().await?;
            print(&crate::gateway::api::run_api(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Vpc(cmd) => {
            let client = conn.client().await?;
            print(&crate::network::run_vpc(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Subnet(cmd) => {
            let client = conn.client().await?;
            print(&crate::network::run_subnet(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Sg(cmd) => {
            let client = conn.client().await?;
            print(&crate::network::run_sg(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::UpdateCode(UpdateCodeArgs { name, code, image }) => {
            let zip = crate::images::load_code_or_image(code.as_deref(), image.as_deref())?;
            let client = conn.client().await?;
            let f = client.update_function_code(&name, zip).await?;
            print(&output::render_function(&f, output)?)?;
            Ok(Outcome::Success)
        }
        Command::UpdateConfig(args) => {
            let client = conn.client().await?;
            let f = client
                .update_function_configuration(update_config_request(args))
                .await?;
            print(&output::render_function(&f, output)?)?;
            Ok(Outcome::Success)
        }
        Command::Get { name, qualifier } => {
            let client = conn.client().await?;
            let f = if qualifier.is_empty() {
                client.get_function(&name).await?
            } else {
                client.get_function_qualified(&name, &qualifier).await?
            };
            print(&crate::concurrency::render_function(&f, output)?)?;
            Ok(Outcome::Success)
        }
        Command::List => {
            let client = conn.client().await?;
            let fs = client.list_functions().await?;
            print(&output::render_functions(&fs, output)?)?;
            Ok(Outcome::Success)
        }
        Command::Delete { name, qualifier } => {
            let client = conn.client().await?;
            if qualifier.is_empty() {
                client.delete_function(&name).await?;
                print(&format!("function {name} deleted\n"))?;
            } else {
                client.delete_version(&name, &qualifier).await?;
                print(&format!("version {qualifier} of function {name} deleted\n"))?;
            }
            Ok(Outcome::Success)
        }
        Command::Publish(args) => {
            let client = conn.client().await?;
            print(&crate::versions::publish(&client, args, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Versions { name } => {
            let client = conn.client().await?;
            print(&crate::versions::versions(&client, &name, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Alias(cmd) => {
            let client = conn.client().await?;
            print(&crate::versions::alias(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Concurrency(cmd) => {
            let client = conn.client().await?;
            print(&crate::concurrency::concurrency(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Account => {
            let client = conn.client().await?;
            print(&crate::concurrency::account(&client, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Provisioned(cmd) => {
            let client = conn.client().await?;
            print(&crate::concurrency::provisioned(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Workers => {
            let client = conn.client().await?;
            let ws = client.list_workers().await?;
            print(&output::render_workers(&ws, output)?)?;
            Ok(Outcome::Success)
        }
        Command::Invoke(args) => {
            let req = invoke_request(&args)?;
            let client = conn.client().await?;
            if args.stream {
                return crate::stream::invoke_streaming(&client, req, args.log_type, output).await;
            }
            let resp = client.invoke(req).await?;
            if args.is_async {
                print(&events::render_async_invoke(&resp, output)?)?;
                return Ok(Outcome::Success);
            }
            print_invoke(&resp, args.log_type, output)
        }
        Command::EventConfig(cmd) => {
            let client = conn.client().await?;
            print(&events::event_config(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Invocation(cmd) => {
            let client = conn.client().await?;
            print(&events::invocation(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Invocations { name, limit } => {
            let client = conn.client().await?;
            let list = client.list_invocations(&name, limit).await?;
            print(&events::render_invocations(&list, output)?)?;
            Ok(Outcome::Success)
        }
        Command::Dlq(cmd) => {
            let client = conn.client().await?;
            print(&events::dlq(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Logs(args) => {
            let client = conn.client().await?;
            logs(&client, args).await
        }
        Command::Auth(cmd) => {
            let client = conn.client().await?;
            print(&crate::auth::run(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Role(cmd) => {
            let client = conn.client().await?;
            print(&crate::role::run(&client, cmd, output).await?)?;
            Ok(Outcome::Success)
        }
        Command::Up(_) | Command::Completion { .. } => {
            unreachable!("handled in main without a controller")
        }
    }
}

async fn create(
    client: &Client,
    args: CreateArgs,
    zip: Vec<u8>,
    output: Output,
) -> anyhow::Result<Outcome> {
    let spec = v1::FunctionSpec {
        name: args.name,
        runtime: args.runtime,
        handler: args.handler,
        memory_size_mb: args.memory.unwrap_or(0),
        timeout_seconds: args.timeout.unwrap_or(0),
        ephemeral_storage_mb: args.ephemeral_storage.unwrap_or(0),
        environment: args.env.into_iter().collect(),
        description: args.description,
        layers: args.layers.into_iter().filter(|l| !l.is_empty()).collect(),
        vpc_config: crate::network::vpc_config(&args.subnets, &args.security_groups),
        package_type: if args.image.image.is_some() {
            "Image".into()
        } else {
            String::new()
        },
        image_config: args.image.config.image_config(),
        role: args.role.unwrap_or_default(),
        ..Default::default()
    };
    let f = client.create_function(spec, zip).await?;
    print(&output::render_function(&f, output)?)?;
    Ok(Outcome::Success)
}

/// `--env` given (or `--clear-env`) replaces the whole environment, as Lambda does.
pub fn update_config_request(args: UpdateConfigArgs) -> v1::UpdateFunctionConfigurationRequest {
    let replace_environment = args.clear_env || !args.env.is_empty();
    v1::UpdateFunctionConfigurationRequest {
        function_name: args.name,
        memory_size_mb: args.memory,
        timeout_seconds: args.timeout,
        ephemeral_storage_mb: args.ephemeral_storage,
        replace_environment,
        environment: args.env.into_iter().collect(),
        handler: args.handler,
        runtime: args.runtime,
        description: args.description,
        replace_layers: args.clear_layers || args.layers.is_some(),
        layers: args
            .layers
            .unwrap_or_default()
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect(),
        vpc_config: crate::network::vpc_config(&args.subnets, &args.security_groups),
        image_config: args.image_config.image_config(),
        role: args.role,
        ..Default::default()
    }
}

fn check_json(bytes: &[u8], flag: &str) -> anyhow::Result<()> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
        anyhow!("{flag} is not valid JSON ({e}); give a JSON document, e.g. {flag} '{{\"key\": \"value\"}}'")
    })?;
    Ok(())
}

fn read_payload_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the payload from standard input")?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| anyhow!("cannot read --payload-file {}: {e}", path.display()))
}

/// Builds the request, refusing a payload or client context that is not JSON.
pub fn invoke_request(args: &InvokeArgs) -> anyhow::Result<v1::InvokeRequest> {
    let payload = match (&args.payload, &args.payload_file) {
        (Some(p), _) => {
            check_json(p.as_bytes(), "--payload")?;
            p.clone().into_bytes()
        }
        (None, Some(file)) => {
            let bytes = read_payload_file(file)?;
            check_json(&bytes, "--payload-file")?;
            bytes
        }
        (None, None) => b"{}".to_vec(),
    };
    let client_context = match &args.client_context {
        Some(c) => {
            check_json(c.as_bytes(), "--client-context")?;
            c.clone()
        }
        None => String::new(),
    };
    Ok(v1::InvokeRequest {
        function_name: args.name.clone(),
        qualifier: args.qualifier.clone(),
        invocation_type: if args.is_async {
            v1::InvocationType::Event
        } else if args.dry_run {
            v1::InvocationType::DryRun
        } else {
            v1::InvocationType::RequestResponse
        } as i32,
        payload,
        log_type: match args.log_type {
            LogType::None => v1::LogType::None,
            LogType::Tail => v1::LogType::Tail,
        } as i32,
        client_context,
        idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
    })
}

fn print_invoke(
    resp: &v1::InvokeResponse,
    log_type: LogType,
    output: Output,
) -> anyhow::Result<Outcome> {
    match output {
        Output::Json | Output::Yaml => {
            print(&output::serialize(&output::InvokeView::from(resp), output)?)?;
        }
        Output::Table => {
            if log_type == LogType::Tail && !resp.log_tail.is_empty() {
                let mut err = std::io::stderr().lock();
                let tail = terminal::for_output(&resp.log_tail, err.is_terminal());
                // The log tail is a courtesy on stderr: a closed stderr must not fail the call.
                let _ = err.write_all(tail.as_bytes());
                if !tail.ends_with('\n') {
                    let _ = err.write_all(b"\n");
                }
            }
            let mut out = std::io::stdout().lock();
            let write_err = "cannot write to standard output";
            if out.is_terminal() {
                out.write_all(terminal::escape_bytes(&resp.payload).as_bytes())
                    .context(write_err)?;
            } else {
                out.write_all(&resp.payload).context(write_err)?;
            }
            // One line per answer, as `kubectl` or `jq` print: the shell prompt starts on its own
            // line, and `read`/`while read` in scripts see the last line.
            if !resp.payload.is_empty() && !resp.payload.ends_with(b"\n") {
                out.write_all(b"\n").context(write_err)?;
            }
            out.flush().context(write_err)?;
        }
    }
    Ok(outcome_of(resp))
}

/// A function error (`Handled`/`Unhandled`) is exit status 2.
pub fn outcome_of(resp: &v1::InvokeResponse) -> Outcome {
    if resp.function_error.is_empty() {
        Outcome::Success
    } else {
        Outcome::FunctionError(resp.function_error.clone())
    }
}

async fn logs(client: &Client, args: LogsArgs) -> anyhow::Result<Outcome> {
    let mut cursor = args.since_seq;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let resp = client.get_logs(&args.name, cursor, LOG_PAGE).await?;
        let mut text = String::new();
        let mut advanced = false;
        for e in &resp.events {
            if e.seq <= cursor {
                continue;
            }
            text.push_str(&e.message);
            if !e.message.ends_with('\n') {
                text.push('\n');
            }
            cursor = e.seq;
            advanced = true;
        }
        print(&terminal::for_output(
            &text,
            std::io::stdout().is_terminal(),
        ))?;
        if advanced {
            continue;
        }
        if !args.follow {
            return Ok(Outcome::Success);
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            _ = &mut ctrl_c => return Ok(Outcome::Success),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> crate::args::Cli {
        crate::args::Cli::try_parse_from(std::iter::once("fnctl").chain(args.iter().copied()))
            .unwrap()
    }

    fn invoke_args(args: &[&str]) -> InvokeArgs {
        match parse(args).command {
            Command::Invoke(a) => a,
            c => panic!("not invoke: {c:?}"),
        }
    }

    #[test]
    fn invalid_payload_is_refused_naming_the_flag() {
        let err =
            invoke_request(&invoke_args(&["invoke", "f", "--payload", "{not json"])).unwrap_err();
        assert!(
            err.to_string().starts_with("--payload is not valid JSON"),
            "{err}"
        );
        let err =
            invoke_request(&invoke_args(&["invoke", "f", "--client-context", "x"])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--client-context is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn payload_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, br#"{"n": 1}"#).unwrap();
        let req = invoke_request(&invoke_args(&[
            "invoke",
            "f",
            "--payload-file",
            good.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(req.payload, br#"{"n": 1}"#);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, b"nope").unwrap();
        let err = invoke_request(&invoke_args(&[
            "invoke",
            "f",
            "--payload-file",
            bad.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--payload-file is not valid JSON"),
            "{err}"
        );
        let missing = dir.path().join("missing.json");
        let err = invoke_request(&invoke_args(&[
            "invoke",
            "f",
            "--payload-file",
            missing.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
    }

    #[test]
    fn invoke_request_fields() {
        let req = invoke_request(&invoke_args(&[
            "invoke",
            "f",
            "--qualifier",
            "1",
            "--log-type",
            "tail",
            "--dry-run",
        ]))
        .unwrap();
        assert_eq!(req.function_name, "f");
        assert_eq!(req.qualifier, "1");
        assert_eq!(req.payload, b"{}");
        assert_eq!(req.invocation_type, v1::InvocationType::DryRun as i32);
        assert_eq!(req.log_type, v1::LogType::Tail as i32);
        let req = invoke_request(&invoke_args(&["invoke", "f", "--payload", "[1,2]"])).unwrap();
        assert_eq!(req.payload, b"[1,2]");
        assert_eq!(
            req.invocation_type,
            v1::InvocationType::RequestResponse as i32
        );
        assert_eq!(req.log_type, v1::LogType::None as i32);
    }

    fn update_args(args: &[&str]) -> UpdateConfigArgs {
        match parse(args).command {
            Command::UpdateConfig(a) => a,
            c => panic!("not update-config: {c:?}"),
        }
    }

    #[test]
    fn update_config_env_replaces_only_when_given() {
        let req = update_config_request(update_args(&["update-config", "f", "--memory", "512"]));
        assert_eq!(req.memory_size_mb, Some(512));
        assert_eq!(req.timeout_seconds, None);
        assert_eq!(req.handler, None);
        assert!(!req.replace_environment);
        let req = update_config_request(update_args(&[
            "update-config",
            "f",
            "--env",
            "A=1",
            "--env",
            "B=c=d",
            "--handler",
            "x.y",
        ]));
        assert!(req.replace_environment);
        assert_eq!(req.environment.len(), 2);
        assert_eq!(req.environment["B"], "c=d");
        assert_eq!(req.handler.as_deref(), Some("x.y"));
        let req = update_config_request(update_args(&["update-config", "f", "--clear-env"]));
        assert!(req.replace_environment && req.environment.is_empty());
    }

    #[test]
    fn function_error_is_its_own_outcome() {
        let mut r = v1::InvokeResponse {
            status_code: 200,
            ..Default::default()
        };
        assert_eq!(outcome_of(&r), Outcome::Success);
        r.function_error = "Unhandled".into();
        assert_eq!(outcome_of(&r), Outcome::FunctionError("Unhandled".into()));
    }
}
