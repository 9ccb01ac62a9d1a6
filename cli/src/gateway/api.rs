//! `fnctl api create|list|get|delete` and `fnctl api route add|list|delete`: API Gateway–style
//! HTTP APIs (protocol HTTP, served at their `$default` stage) and their routes. JSON and YAML use
//! API Gateway v2's names (`ApiId`, `RouteKey`, …).
use clap::{Args, Subcommand};
use lamina_client::{v1, Client};
use serde::Serialize;

use crate::args::Output;
use crate::output::{lambda_timestamp, serialize, table};

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Create an HTTP API (no routes yet); prints its id and endpoint
    Create {
        name: String,
        /// The format of the events its functions get (default 2.0)
        #[arg(long, value_parser = ["1.0", "2.0"])]
        payload_format: Option<String>,
    },
    /// List the HTTP APIs
    #[command(alias = "ls")]
    List,
    /// Show an HTTP API with its routes
    Get { api_id: String },
    /// Delete an HTTP API with its routes
    #[command(alias = "rm")]
    Delete { api_id: String },
    /// An HTTP API's routes: add, list, delete
    #[command(subcommand)]
    Route(RouteCommand),
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Add a route invoking a function; the most specific route matching a request wins
    Add(RouteAddArgs),
    /// List an HTTP API's routes
    #[command(alias = "ls")]
    List { api_id: String },
    /// Delete a route, named by its id or its route key ('GET /items/{id}')
    #[command(alias = "rm")]
    Delete { api_id: String, route: String },
}

#[derive(Debug, Args)]
pub struct RouteAddArgs {
    pub api_id: String,
    /// 'METHOD /path' (METHOD: GET, POST, …, or ANY; '{name}' matches one path segment, a last
    /// '{name+}' the rest of the path), or '$default' (what no other route matches)
    pub route_key: String,
    /// The function the route invokes, optionally at a version or alias: F or F:QUALIFIER
    #[arg(long, value_name = "F[:QUALIFIER]", value_parser = parse_function_target)]
    pub function: (String, String),
    /// Steady requests per second the route accepts; over it (and the burst) clients get 429
    #[arg(long, value_name = "R", requires = "throttle_burst", value_parser = parse_rate)]
    pub throttle_rate: Option<f64>,
    /// The bucket's size: requests the route accepts at once (0 refuses every request, as in API
    /// Gateway)
    #[arg(long, value_name = "B", requires = "throttle_rate")]
    pub throttle_burst: Option<u32>,
}

/// `F` or `F:QUALIFIER` -> (function, qualifier).
pub fn parse_function_target(s: &str) -> Result<(String, String), String> {
    let (name, qualifier) = s.split_once(':').unwrap_or((s, ""));
    if name.is_empty() || (s.contains(':') && qualifier.is_empty()) {
        return Err(format!(
            "--function {s:?}: use F or F:QUALIFIER (a version or an alias)"
        ));
    }
    Ok((name.to_string(), qualifier.to_string()))
}

/// A finite, non-negative number of requests per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "--throttle-rate {s:?}: requests per second, a number of 0 or more (e.g. 50 or 0.5)"
        )),
    }
}

impl RouteAddArgs {
    pub fn throttle(&self) -> Option<v1::HttpThrottle> {
        match (self.throttle_rate, self.throttle_burst) {
            (Some(rate_limit), Some(burst_limit)) => Some(v1::HttpThrottle {
                rate_limit,
                burst_limit,
            }),
            _ => None,
        }
    }
}

/// A route as API Gateway v2's `GetRoute` shows it; `Target` names the function (and qualifier)
/// it invokes.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RouteView {
    pub route_id: String,
    pub route_key: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttling_rate_limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttling_burst_limit: Option<u32>,
}

/// An HTTP API as API Gateway v2's `GetApi` shows it, with its routes.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HttpApiView {
    pub api_id: String,
    pub name: String,
    pub protocol_type: &'static str,
    pub api_endpoint: String,
    pub payload_format_version: String,
    pub created_date: String,
    pub routes: Vec<RouteView>,
}

/// `function` or `function:qualifier`.
fn target(r: &v1::HttpRoute) -> String {
    if r.qualifier.is_empty() {
        r.function_name.clone()
    } else {
        format!("{}:{}", r.function_name, r.qualifier)
    }
}

fn payload_format(a: &v1::HttpApi) -> &str {
    if a.payload_format.is_empty() {
        "2.0"
    } else {
        &a.payload_format
    }
}

impl From<&v1::HttpRoute> for RouteView {
    fn from(r: &v1::HttpRoute) -> Self {
        RouteView {
            route_id: r.route_id.clone(),
            route_key: r.route_key.clone(),
            target: target(r),
            throttling_rate_limit: r.throttle.as_ref().map(|t| t.rate_limit),
            throttling_burst_limit: r.throttle.as_ref().map(|t| t.burst_limit),
        }
    }
}

impl From<&v1::HttpApi> for HttpApiView {
    fn from(a: &v1::HttpApi) -> Self {
        HttpApiView {
            api_id: a.api_id.clone(),
            name: a.name.clone(),
            protocol_type: "HTTP",
            api_endpoint: a.api_endpoint.clone(),
            payload_format_version: payload_format(a).to_string(),
            created_date: lambda_timestamp(a.created_ms),
            routes: a.routes.iter().map(RouteView::from).collect(),
        }
    }
}

pub fn apis_table(apis: &[v1::HttpApi]) -> String {
    let rows: Vec<Vec<String>> = apis
        .iter()
        .map(|a| {
            vec![
                a.api_id.clone(),
                a.name.clone(),
                payload_format(a).to_string(),
                a.routes.len().to_string(),
                a.api_endpoint.clone(),
            ]
        })
        .collect();
    table(&["ID", "NAME", "FORMAT", "ROUTES", "ENDPOINT"], &rows)
}

pub fn routes_table(routes: &[v1::HttpRoute]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                r.route_id.clone(),
                r.route_key.clone(),
                target(r),
                match &r.throttle {
                    Some(t) => format!("{}/s burst {}", t.rate_limit, t.burst_limit),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    table(&["ID", "ROUTE", "TARGET", "THROTTLE"], &rows)
}

/// One API: its row then, when it has routes, their table; or API Gateway's object.
pub fn render_api(a: &v1::HttpApi, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => {
            let mut out = apis_table(std::slice::from_ref(a));
            if !a.routes.is_empty() {
                out.push('\n');
                out.push_str(&routes_table(&a.routes));
            }
            Ok(out)
        }
        _ => serialize(&HttpApiView::from(a), format),
    }
}

pub fn render_apis(apis: &[v1::HttpApi], format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(apis_table(apis)),
        _ => serialize(
            &apis.iter().map(HttpApiView::from).collect::<Vec<_>>(),
            format,
        ),
    }
}

pub fn render_route(r: &v1::HttpRoute, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(routes_table(std::slice::from_ref(r))),
        _ => serialize(&RouteView::from(r), format),
    }
}

pub fn render_routes(routes: &[v1::HttpRoute], format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(routes_table(routes)),
        _ => serialize(
            &routes.iter().map(RouteView::from).collect::<Vec<_>>(),
            format,
        ),
    }
}

pub async fn run_api(client: &Client, cmd: ApiCommand, output: Output) -> anyhow::Result<String> {
    match cmd {
        ApiCommand::Create {
            name,
            payload_format,
        } => {
            let a = client
                .create_http_api(&name, payload_format.as_deref().unwrap_or(""))
                .await?;
            render_api(&a, output)
        }
        ApiCommand::List => render_apis(&client.list_http_apis().await?, output),
        ApiCommand::Get { api_id } => render_api(&client.get_http_api(&api_id).await?, output),
        ApiCommand::Delete { api_id } => {
            client.delete_http_api(&api_id).await?;
            Ok(format!("http api {api_id} deleted\n"))
        }
        ApiCommand::Route(RouteCommand::Add(a)) => {
            let (function, qualifier) = &a.function;
            let r = client
                .create_http_route(&a.api_id, &a.route_key, function, qualifier, a.throttle())
                .await?;
            render_route(&r, output)
        }
        ApiCommand::Route(RouteCommand::List { api_id }) => {
            render_routes(&client.list_http_routes(&api_id).await?, output)
        }
        ApiCommand::Route(RouteCommand::Delete { api_id, route }) => {
            client.delete_http_route(&api_id, &route).await?;
            Ok(format!("route {route} of http api {api_id} deleted\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<ApiCommand, clap::Error> {
        let cli = Cli::try_parse_from(["fnctl", "api"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Api(c) => Ok(c),
            other => panic!("not api: {other:?}"),
        }
    }

    fn route_add(args: &[&str]) -> Result<RouteAddArgs, clap::Error> {
        let mut all = vec!["route", "add"];
        all.extend_from_slice(args);
        match parse(&all)? {
            ApiCommand::Route(RouteCommand::Add(a)) => Ok(a),
            other => panic!("not route add: {other:?}"),
        }
    }

    #[test]
    fn create_takes_a_payload_format() {
        let ApiCommand::Create {
            name,
            payload_format,
        } = parse(&["create", "shop", "--payload-format", "1.0"]).unwrap()
        else {
            panic!("not create")
        };
        assert_eq!(
            (name.as_str(), payload_format.as_deref()),
            ("shop", Some("1.0"))
        );
        assert!(matches!(
            parse(&["create", "shop"]).unwrap(),
            ApiCommand::Create {
                payload_format: None,
                ..
            }
        ));
        assert!(parse(&["create", "shop", "--payload-format", "3.0"]).is_err());
        assert!(parse(&["create"]).is_err());
        assert!(matches!(parse(&["ls"]).unwrap(), ApiCommand::List));
        assert!(
            matches!(parse(&["get", "a1"]).unwrap(), ApiCommand::Get { api_id } if api_id == "a1")
        );
        assert!(
            matches!(parse(&["rm", "a1"]).unwrap(), ApiCommand::Delete { api_id } if api_id == "a1")
        );
    }

    #[test]
    fn route_add_parses_function_qualifier_and_throttle() {
        let a = route_add(&["a1", "GET /items/{id}", "--function", "f"]).unwrap();
        assert_eq!(a.api_id, "a1");
        assert_eq!(a.route_key, "GET /items/{id}");
        assert_eq!(a.function, ("f".to_string(), String::new()));
        assert_eq!(a.throttle(), None);

        let a = route_add(&[
            "a1",
            "$default",
            "--function",
            "f:live",
            "--throttle-rate",
            "2.5",
            "--throttle-burst",
            "10",
        ])
        .unwrap();
        assert_eq!(a.function, ("f".to_string(), "live".to_string()));
        assert_eq!(
            a.throttle(),
            Some(v1::HttpThrottle {
                rate_limit: 2.5,
                burst_limit: 10
            })
        );
    }

    #[test]
    fn route_add_refuses_bad_input() {
        assert!(
            route_add(&["a1", "GET /x"]).is_err(),
            "--function is required"
        );
        for bad in [":live", "f:", ""] {
            let err = route_add(&["a1", "GET /x", "--function", bad]).unwrap_err();
            assert!(err.to_string().contains("F:QUALIFIER"), "{bad}: {err}");
        }
        let f = ["a1", "GET /x", "--function", "f"];
        let with = |extra: &[&str]| route_add(&[&f[..], extra].concat());
        assert!(with(&["--throttle-rate", "5"]).is_err(), "rate needs burst");
        assert!(
            with(&["--throttle-burst", "5"]).is_err(),
            "burst needs rate"
        );
        for rate in ["-1", "-0.5", "NaN", "inf", "x"] {
            let flag = format!("--throttle-rate={rate}");
            let err = with(&[&flag, "--throttle-burst", "1"]).unwrap_err();
            assert!(err.to_string().contains("0 or more"), "{rate}: {err}");
        }
        assert!(with(&["--throttle-rate", "1", "--throttle-burst=-1"]).is_err());
        let closed = with(&["--throttle-rate", "0", "--throttle-burst", "0"]).unwrap();
        assert_eq!(
            closed.throttle(),
            Some(v1::HttpThrottle {
                rate_limit: 0.0,
                burst_limit: 0
            })
        );
    }

    #[test]
    fn route_list_and_delete_parse() {
        assert!(matches!(
            parse(&["route", "ls", "a1"]).unwrap(),
            ApiCommand::Route(RouteCommand::List { api_id }) if api_id == "a1"
        ));
        assert!(matches!(
            parse(&["route", "delete", "a1", "GET /items/{id}"]).unwrap(),
            ApiCommand::Route(RouteCommand::Delete { api_id, route })
                if api_id == "a1" && route == "GET /items/{id}"
        ));
    }

    fn sample() -> v1::HttpApi {
        v1::HttpApi {
            api_id: "abcde12345".into(),
            name: "shop".into(),
            payload_format: "1.0".into(),
            api_endpoint: "http://abcde12345.execute-api.us-east-1.localhost:9690".into(),
            routes: vec![
                v1::HttpRoute {
                    route_id: "r1".into(),
                    route_key: "GET /items/{id}".into(),
                    function_name: "f".into(),
                    qualifier: "live".into(),
                    throttle: Some(v1::HttpThrottle {
                        rate_limit: 2.5,
                        burst_limit: 10,
                    }),
                    created_ms: 0,
                },
                v1::HttpRoute {
                    route_id: "r2".into(),
                    route_key: "$default".into(),
                    function_name: "g".into(),
                    ..Default::default()
                },
            ],
            created_ms: 0,
        }
    }

    #[test]
    fn json_is_api_gateway_v2s_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&render_api(&sample(), Output::Json).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ApiId": "abcde12345",
                "Name": "shop",
                "ProtocolType": "HTTP",
                "ApiEndpoint": "http://abcde12345.execute-api.us-east-1.localhost:9690",
                "PayloadFormatVersion": "1.0",
                "CreatedDate": "1970-01-01T00:00:00.000+0000",
                "Routes": [
                    {"RouteId": "r1", "RouteKey": "GET /items/{id}", "Target": "f:live",
                     "ThrottlingRateLimit": 2.5, "ThrottlingBurstLimit": 10},
                    {"RouteId": "r2", "RouteKey": "$default", "Target": "g"},
                ],
            })
        );
        let mut bare = sample();
        bare.payload_format.clear();
        let v: serde_json::Value =
            serde_json::from_str(&render_apis(&[bare], Output::Json).unwrap()).unwrap();
        assert_eq!(v[0]["PayloadFormatVersion"], "2.0");
        let r: serde_json::Value =
            serde_json::from_str(&render_route(&sample().routes[1], Output::Json).unwrap())
                .unwrap();
        assert_eq!(
            r,
            serde_json::json!({"RouteId": "r2", "RouteKey": "$default", "Target": "g"})
        );
    }

    #[test]
    fn tables() {
        let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let t = render_api(&sample(), Output::Table).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            cells(lines[1]),
            [
                "abcde12345",
                "shop",
                "1.0",
                "2",
                "http://abcde12345.execute-api.us-east-1.localhost:9690"
            ],
            "{t}"
        );
        assert_eq!(lines[2], "", "{t}");
        assert_eq!(
            cells(lines[3]),
            ["ID", "ROUTE", "TARGET", "THROTTLE"],
            "{t}"
        );
        assert_eq!(
            cells(lines[4]),
            ["r1", "GET", "/items/{id}", "f:live", "2.5/s", "burst", "10"],
            "{t}"
        );
        assert_eq!(cells(lines[5]), ["r2", "$default", "g", "-"], "{t}");
        let t = render_routes(&[], Output::Table).unwrap();
        assert_eq!(t, "ID   ROUTE   TARGET   THROTTLE\n");
    }
}
