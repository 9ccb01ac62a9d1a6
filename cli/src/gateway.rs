//! The HTTP gateway's commands: `fnctl url create|get|update|delete|list` (function URLs, here)
//! and `fnctl api ...` with `fnctl api route ...` (HTTP APIs, in `gateway/api.rs`). What they
//! configure is served on the controller's `--http-listen` (a URL also at
//! `http://HOST:PORT/<url-id>/`, an API at `http://HOST:PORT/<api-id>/`).
use clap::{Args, Subcommand, ValueEnum};
use lamina_client::{v1, Client};
use serde::Serialize;

use crate::args::Output;
use crate::output::{lambda_timestamp, serialize, table};

pub mod api;

pub use api::ApiCommand;

/// Longest `--cors-max-age` Lambda accepts, in seconds.
const MAX_CORS_MAX_AGE: u32 = 86_400;

#[derive(Debug, Subcommand)]
pub enum UrlCommand {
    /// Give a function (or one of its aliases: --qualifier) a URL; prints it
    Create(UrlCreateArgs),
    /// Show a function's URL configuration
    Get(UrlTarget),
    /// Change a URL's configuration (what is not given keeps its value; CORS flags replace the
    /// whole CORS configuration, as Lambda's UpdateFunctionUrlConfig does)
    Update(UrlUpdateArgs),
    /// Delete a function's URL: it answers no more requests
    #[command(alias = "rm")]
    Delete(UrlTarget),
    /// List a function's URLs (unqualified and per alias)
    #[command(alias = "ls")]
    List { name: String },
}

/// Which URL: a function's, unqualified or of one alias.
#[derive(Debug, Args)]
pub struct UrlTarget {
    pub name: String,
    /// An alias name: the URL of that alias (default: the unqualified function, $LATEST)
    #[arg(long, default_value = "")]
    pub qualifier: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthType {
    /// Anyone may call the URL
    #[value(name = "NONE")]
    None,
    /// Only requests signed with SigV4 (service `lambda`) by one of Lamina's access keys
    #[value(name = "AWS_IAM")]
    AwsIam,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::None => "NONE",
            AuthType::AwsIam => "AWS_IAM",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InvokeMode {
    /// The whole response at once (up to 6 MB)
    #[value(name = "BUFFERED")]
    Buffered,
    /// The body streamed as the function writes it (awslambda.streamifyResponse)
    #[value(name = "RESPONSE_STREAM")]
    ResponseStream,
}

impl InvokeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            InvokeMode::Buffered => "BUFFERED",
            InvokeMode::ResponseStream => "RESPONSE_STREAM",
        }
    }
}

#[derive(Debug, Args)]
pub struct UrlCreateArgs {
    #[command(flatten)]
    pub target: UrlTarget,
    /// Who may call the URL: NONE (anyone: a public URL) or AWS_IAM (requests signed with a
    /// Lamina access key). Required, as in Lambda: a public URL is never made by default
    #[arg(long, value_enum, ignore_case = true)]
    pub auth_type: AuthType,
    /// How the URL answers (default BUFFERED)
    #[arg(long, value_enum, ignore_case = true)]
    pub invoke_mode: Option<InvokeMode>,
    #[command(flatten)]
    pub cors: CorsArgs,
}

#[derive(Debug, Args)]
pub struct UrlUpdateArgs {
    #[command(flatten)]
    pub target: UrlTarget,
    #[arg(long, value_enum, ignore_case = true)]
    pub auth_type: Option<AuthType>,
    #[arg(long, value_enum, ignore_case = true)]
    pub invoke_mode: Option<InvokeMode>,
    #[command(flatten)]
    pub cors: CorsArgs,
    /// Remove the CORS configuration (the gateway stops answering preflights and adding CORS
    /// headers)
    #[arg(long, conflicts_with = "CorsArgs")]
    pub no_cors: bool,
}

/// A URL's CORS configuration, answered by the gateway itself (a preflight never invokes the
/// function). Lists take comma-separated values and may be repeated.
#[derive(Debug, Args, Default)]
pub struct CorsArgs {
    /// Origins allowed to call the URL (`*` for any)
    #[arg(long, value_delimiter = ',', value_name = "ORIGIN,...")]
    pub cors_allow_origins: Option<Vec<String>>,
    /// Methods allowed (`*` for any)
    #[arg(long, value_delimiter = ',', value_name = "METHOD,...")]
    pub cors_allow_methods: Option<Vec<String>>,
    /// Request headers allowed
    #[arg(long, value_delimiter = ',', value_name = "HEADER,...")]
    pub cors_allow_headers: Option<Vec<String>>,
    /// Response headers the browser may read
    #[arg(long, value_delimiter = ',', value_name = "HEADER,...")]
    pub cors_expose_headers: Option<Vec<String>>,
    /// How long a browser may cache a preflight's answer, in seconds (0..86400)
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u32).range(0..=MAX_CORS_MAX_AGE as i64))]
    pub cors_max_age: Option<u32>,
    /// Allow cookies and credentials in CORS requests
    #[arg(long)]
    pub cors_allow_credentials: bool,
}

/// The values given, without blanks: `--cors-allow-origins 'a, b' --cors-allow-origins c`.
fn values(v: &Option<Vec<String>>) -> Vec<String> {
    v.iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl CorsArgs {
    /// Whether any CORS flag was given.
    pub fn given(&self) -> bool {
        self.cors_allow_origins.is_some()
            || self.cors_allow_methods.is_some()
            || self.cors_allow_headers.is_some()
            || self.cors_expose_headers.is_some()
            || self.cors_max_age.is_some()
            || self.cors_allow_credentials
    }

    /// The CORS configuration the flags describe; `None` when none was given.
    pub fn to_cors(&self) -> Option<v1::Cors> {
        self.given().then(|| v1::Cors {
            allow_credentials: self.cors_allow_credentials,
            allow_headers: values(&self.cors_allow_headers),
            allow_methods: values(&self.cors_allow_methods),
            allow_origins: values(&self.cors_allow_origins),
            expose_headers: values(&self.cors_expose_headers),
            max_age: self.cors_max_age.unwrap_or(0),
        })
    }
}

pub fn create_request(a: &UrlCreateArgs) -> v1::FunctionUrlConfigRequest {
    v1::FunctionUrlConfigRequest {
        function_name: a.target.name.clone(),
        qualifier: a.target.qualifier.clone(),
        auth_type: a.auth_type.as_str().to_string(),
        invoke_mode: a
            .invoke_mode
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        cors: a.cors.to_cors(),
        set_cors: false,
    }
}

/// Only what was given changes: an unset `auth_type`/`invoke_mode` ("") keeps its value, and
/// `set_cors` is true only with CORS flags (new configuration) or `--no-cors` (none).
pub fn update_request(a: &UrlUpdateArgs) -> v1::FunctionUrlConfigRequest {
    v1::FunctionUrlConfigRequest {
        function_name: a.target.name.clone(),
        qualifier: a.target.qualifier.clone(),
        auth_type: a
            .auth_type
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        invoke_mode: a
            .invoke_mode
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        cors: if a.no_cors { None } else { a.cors.to_cors() },
        set_cors: a.no_cors || a.cors.given(),
    }
}

/// Lambda's `Cors`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CorsView {
    pub allow_credentials: bool,
    pub allow_headers: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_origins: Vec<String>,
    pub expose_headers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

/// A function URL configuration as Lambda's `GetFunctionUrlConfig` shows it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionUrlView {
    pub function_url: String,
    pub function_arn: String,
    pub auth_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsView>,
    pub creation_time: String,
    pub last_modified_time: String,
    pub invoke_mode: String,
}

fn invoke_mode(u: &v1::FunctionUrlConfig) -> &str {
    if u.invoke_mode.is_empty() {
        InvokeMode::Buffered.as_str()
    } else {
        &u.invoke_mode
    }
}

impl From<&v1::FunctionUrlConfig> for FunctionUrlView {
    fn from(u: &v1::FunctionUrlConfig) -> Self {
        FunctionUrlView {
            function_url: u.function_url.clone(),
            function_arn: u.function_arn.clone(),
            auth_type: u.auth_type.clone(),
            cors: u.cors.as_ref().map(|c| CorsView {
                allow_credentials: c.allow_credentials,
                allow_headers: c.allow_headers.clone(),
                allow_methods: c.allow_methods.clone(),
                allow_origins: c.allow_origins.clone(),
                expose_headers: c.expose_headers.clone(),
                max_age: (c.max_age > 0).then_some(c.max_age),
            }),
            creation_time: lambda_timestamp(u.created_ms),
            last_modified_time: lambda_timestamp(u.last_modified_ms),
            invoke_mode: invoke_mode(u).to_string(),
        }
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

pub fn urls_table(urls: &[v1::FunctionUrlConfig]) -> String {
    let rows: Vec<Vec<String>> = urls
        .iter()
        .map(|u| {
            vec![
                u.function_url.clone(),
                u.function_name.clone(),
                or_dash(&u.qualifier),
                u.auth_type.clone(),
                invoke_mode(u).to_string(),
            ]
        })
        .collect();
    table(&["URL", "FUNCTION", "QUALIFIER", "AUTH", "MODE"], &rows)
}

/// One URL configuration: a table row, or Lambda's object.
pub fn render_url(u: &v1::FunctionUrlConfig, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(urls_table(std::slice::from_ref(u))),
        _ => serialize(&FunctionUrlView::from(u), format),
    }
}

/// URL configurations: a table, or a list of Lambda's objects.
pub fn render_urls(urls: &[v1::FunctionUrlConfig], format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(urls_table(urls)),
        _ => serialize(
            &urls.iter().map(FunctionUrlView::from).collect::<Vec<_>>(),
            format,
        ),
    }
}

/// `NAME` or `NAME:QUALIFIER`, for messages.
fn qualified(name: &str, qualifier: &str) -> String {
    if qualifier.is_empty() {
        name.to_string()
    } else {
        format!("{name}:{qualifier}")
    }
}

pub async fn run_url(client: &Client, cmd: UrlCommand, output: Output) -> anyhow::Result<String> {
    match cmd {
        UrlCommand::Create(a) => {
            let u = client
                .create_function_url_config(create_request(&a))
                .await?;
            render_url(&u, output)
        }
        UrlCommand::Get(t) => {
            let u = client
                .get_function_url_config(&t.name, &t.qualifier)
                .await?;
            render_url(&u, output)
        }
        UrlCommand::Update(a) => {
            let u = client
                .update_function_url_config(update_request(&a))
                .await?;
            render_url(&u, output)
        }
        UrlCommand::Delete(t) => {
            client
                .delete_function_url_config(&t.name, &t.qualifier)
                .await?;
            Ok(format!(
                "function URL of {} deleted\n",
                qualified(&t.name, &t.qualifier)
            ))
        }
        UrlCommand::List { name } => {
            render_urls(&client.list_function_url_configs(&name).await?, output)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<UrlCommand, clap::Error> {
        let cli = Cli::try_parse_from(["fnctl", "url"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Url(c) => Ok(c),
            other => panic!("not url: {other:?}"),
        }
    }

    fn create(args: &[&str]) -> v1::FunctionUrlConfigRequest {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        match parse(&all).unwrap() {
            UrlCommand::Create(a) => create_request(&a),
            other => panic!("not create: {other:?}"),
        }
    }

    fn update(args: &[&str]) -> v1::FunctionUrlConfigRequest {
        let mut all = vec!["update"];
        all.extend_from_slice(args);
        match parse(&all).unwrap() {
            UrlCommand::Update(a) => update_request(&a),
            other => panic!("not update: {other:?}"),
        }
    }

    #[test]
    fn create_needs_an_auth_type_and_defaults_to_a_buffered_url_without_cors() {
        assert!(parse(&["create", "f"]).is_err());
        let r = create(&["f", "--auth-type", "NONE"]);
        assert_eq!(r.function_name, "f");
        assert_eq!(r.qualifier, "");
        assert_eq!(r.auth_type, "NONE");
        assert_eq!(r.invoke_mode, "");
        assert_eq!(r.cors, None);
        assert!(!r.set_cors);
    }

    #[test]
    fn create_parses_every_flag() {
        let r = create(&[
            "f",
            "--qualifier",
            "live",
            "--auth-type",
            "aws_iam",
            "--invoke-mode",
            "RESPONSE_STREAM",
            "--cors-allow-origins",
            "https://a.example, https://b.example",
            "--cors-allow-origins",
            "https://c.example",
            "--cors-allow-methods",
            "GET,POST",
            "--cors-allow-headers",
            "x-a",
            "--cors-expose-headers",
            "x-b,x-c",
            "--cors-max-age",
            "600",
            "--cors-allow-credentials",
        ]);
        assert_eq!(r.qualifier, "live");
        assert_eq!(r.auth_type, "AWS_IAM");
        assert_eq!(r.invoke_mode, "RESPONSE_STREAM");
        assert_eq!(
            r.cors,
            Some(v1::Cors {
                allow_credentials: true,
                allow_headers: vec!["x-a".into()],
                allow_methods: vec!["GET".into(), "POST".into()],
                allow_origins: vec![
                    "https://a.example".into(),
                    "https://b.example".into(),
                    "https://c.example".into()
                ],
                expose_headers: vec!["x-b".into(), "x-c".into()],
                max_age: 600,
            })
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["create", "f", "--auth-type", "OPEN"]).is_err());
        assert!(parse(&["create", "f", "--invoke-mode", "STREAM"]).is_err());
        assert!(parse(&["create", "f", "--cors-max-age", "86401"]).is_err());
        assert!(parse(&["create", "f", "--cors-max-age", "-1"]).is_err());
        assert!(parse(&["create", "f", "--no-cors"]).is_err());
        assert!(parse(&["create"]).is_err());
        assert!(parse(&["list"]).is_err());
    }

    #[test]
    fn update_changes_only_what_is_given() {
        let r = update(&["f", "--auth-type", "AWS_IAM"]);
        assert_eq!(
            (r.auth_type.as_str(), r.invoke_mode.as_str()),
            ("AWS_IAM", "")
        );
        assert_eq!((r.cors, r.set_cors), (None, false));

        let r = update(&["f", "--qualifier", "live", "--cors-max-age", "5"]);
        assert_eq!((r.qualifier.as_str(), r.auth_type.as_str()), ("live", ""));
        assert!(r.set_cors);
        assert_eq!(
            r.cors,
            Some(v1::Cors {
                max_age: 5,
                ..Default::default()
            })
        );

        let r = update(&["f", "--cors-allow-credentials"]);
        assert!(r.set_cors && r.cors.is_some_and(|c| c.allow_credentials));

        let r = update(&["f", "--no-cors", "--invoke-mode", "BUFFERED"]);
        assert_eq!((r.cors, r.set_cors), (None, true));
        assert_eq!(r.invoke_mode, "BUFFERED");

        for flag in [
            ["--cors-allow-origins", "*"],
            ["--cors-max-age", "1"],
            ["--cors-allow-methods", "GET"],
        ] {
            let err = parse(&["update", "f", "--no-cors", flag[0], flag[1]]).unwrap_err();
            assert!(err.to_string().contains("--no-cors"), "{err}");
        }
        assert!(parse(&["update", "f", "--no-cors", "--cors-allow-credentials"]).is_err());
    }

    #[test]
    fn get_delete_and_list_parse() {
        match parse(&["get", "f", "--qualifier", "live"]).unwrap() {
            UrlCommand::Get(t) => {
                assert_eq!((t.name.as_str(), t.qualifier.as_str()), ("f", "live"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(&["rm", "f"]).unwrap(), UrlCommand::Delete(t) if t.name == "f"));
        assert!(matches!(parse(&["ls", "f"]).unwrap(), UrlCommand::List { name } if name == "f"));
    }

    fn sample() -> v1::FunctionUrlConfig {
        v1::FunctionUrlConfig {
            url_id: "abc".into(),
            function_name: "f".into(),
            qualifier: "".into(),
            function_url: "http://abc.lambda-url.us-east-1.localhost:9690/".into(),
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            auth_type: "NONE".into(),
            invoke_mode: "".into(),
            cors: Some(v1::Cors {
                allow_origins: vec!["*".into()],
                max_age: 0,
                ..Default::default()
            }),
            created_ms: 0,
            last_modified_ms: 1_000,
        }
    }

    #[test]
    fn json_is_lambdas_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&render_url(&sample(), Output::Json).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "FunctionUrl": "http://abc.lambda-url.us-east-1.localhost:9690/",
                "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
                "AuthType": "NONE",
                "Cors": {
                    "AllowCredentials": false,
                    "AllowHeaders": [],
                    "AllowMethods": [],
                    "AllowOrigins": ["*"],
                    "ExposeHeaders": [],
                },
                "CreationTime": "1970-01-01T00:00:00.000+0000",
                "LastModifiedTime": "1970-01-01T00:00:01.000+0000",
                "InvokeMode": "BUFFERED",
            })
        );
        let mut u = sample();
        u.cors = None;
        u.qualifier = "live".into();
        let v: serde_json::Value =
            serde_json::from_str(&render_urls(&[u], Output::Json).unwrap()).unwrap();
        assert!(v[0].get("Cors").is_none(), "{v}");
        let y = render_url(&sample(), Output::Yaml).unwrap();
        assert!(y.contains("FunctionUrl: http://abc."), "{y}");
    }

    #[test]
    fn table_has_one_row_per_url() {
        let mut live = sample();
        live.qualifier = "live".into();
        live.invoke_mode = "RESPONSE_STREAM".into();
        let t = render_urls(&[sample(), live], Output::Table).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[0].starts_with("URL") && lines[0].ends_with("MODE"),
            "{t}"
        );
        let url = "http://abc.lambda-url.us-east-1.localhost:9690/";
        let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cells(lines[1]), [url, "f", "-", "NONE", "BUFFERED"], "{t}");
        assert_eq!(
            cells(lines[2]),
            [url, "f", "live", "NONE", "RESPONSE_STREAM"],
            "{t}"
        );
    }
}
