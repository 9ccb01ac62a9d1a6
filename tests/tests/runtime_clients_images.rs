//! The official AWS runtime interface clients run unchanged as container-image functions: each image
//! holds the runtime (the host's python3.11 or node with their libraries, or the `lambda_runtime`
//! binary), the client package and the handler, and its Entrypoint/Cmd start the client the way the
//! AWS base images do (`python3.11 -m awslambdaric` + `app.handler`, ...). Checked through what the
//! client's context reports: request id, function name, invoked function ARN; and a handled error
//! with its type.
//!
//! The clients come from their registries through `tests/clients/install.sh` (deploy/test.sh runs it).
use anyhow::Result;
use lamina_e2e::clients::{node_client_image, python_client_image, rust_client_image};
use lamina_e2e::images::Image;
use lamina_e2e::*;

const PYTHON_APP: &str = r#"
def handler(event, context):
    if event.get("mode") == "error":
        raise ValueError("python says no")
    return {
        "client": "awslambdaric",
        "request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "event": event,
    }
"#;

const NODE_INDEX: &str = r#"
exports.handler = async (event, context) => {
  if (event.mode === "error") throw new TypeError("node says no");
  return {
    client: "aws-lambda-ric",
    request_id: context.awsRequestId,
    invoked_function_arn: context.invokedFunctionArn,
    function_name: context.functionName,
    function_version: context.functionVersion,
    event,
  };
};
"#;

#[derive(Clone, Copy, Debug)]
enum Ric {
    Python,
    Node,
    Rust,
}

impl Ric {
    fn image(self) -> Result<Image> {
        match self {
            Ric::Python => python_client_image(PYTHON_APP),
            Ric::Node => node_client_image(NODE_INDEX),
            Ric::Rust => rust_client_image(),
        }
    }
    fn client_name(self) -> &'static str {
        match self {
            Ric::Python => "awslambdaric",
            Ric::Node => "aws-lambda-ric",
            Ric::Rust => "lambda_runtime",
        }
    }
    /// The error type the client reports for `{"mode":"error"}`.
    fn handled_error_type(self) -> &'static str {
        match self {
            Ric::Python => "ValueError",
            Ric::Node => "TypeError",
            Ric::Rust => "CustomerError",
        }
    }
}

fn check_client_image(ric: Ric) {
    require_root();
    run(async move {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique(&format!("ric-img-{ric:?}").to_lowercase());
        let mut s = spec(&name, "", "");
        s.package_type = "Image".into();
        s.timeout_seconds = 10;
        // Gzip layers: the node image is ~100 MB uncompressed, over the API's 64 MB request limit.
        let cfg = c.create_function(s, ric.image()?.oci_tar_gzip()).await?;
        assert_eq!(cfg.package_type, "Image");

        // Cold, then warm: the client's context names this invocation and this function.
        let mut ids = Vec::new();
        for n in 1..=2 {
            let resp = invoke(&c, &name, &format!(r#"{{"mode":"ok","n":{n}}}"#)).await?;
            assert_eq!(
                resp.function_error,
                "",
                "{}\n{}\n{}",
                String::from_utf8_lossy(&resp.payload),
                resp.log_tail,
                cluster.logs()
            );
            let v = json(&resp);
            assert_eq!(v["client"], ric.client_name(), "{v}");
            assert_eq!(v["request_id"], resp.request_id.as_str(), "{v}");
            assert_eq!(v["function_name"], name.as_str(), "{v}");
            assert_eq!(v["invoked_function_arn"], cfg.arn.as_str(), "{v}");
            assert!(
                cfg.arn.ends_with(&format!(":function:{name}")),
                "{}",
                cfg.arn
            );
            assert_eq!(v["function_version"], "$LATEST", "{v}");
            assert_eq!(v["event"]["n"], n, "{v}");
            ids.push(resp.request_id);
        }
        assert_ne!(ids[0], ids[1]);

        // A handled error: the client posts /error with its type and message.
        let err = invoke(&c, &name, r#"{"mode":"error"}"#).await?;
        assert_eq!(err.function_error, "Unhandled", "{err:?}");
        let e = json(&err);
        assert_eq!(e["errorType"], ric.handled_error_type(), "{e}");
        assert!(
            e["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .contains("says no"),
            "{e}"
        );
        // The sandbox survived it.
        let again = json(&invoke(&c, &name, r#"{"mode":"ok","n":3}"#).await?);
        assert_eq!(again["event"]["n"], 3, "{again}");
        Ok(())
    });
}

#[test]
fn awslambdaric_runs_unchanged_in_an_image() {
    check_client_image(Ric::Python);
}

#[test]
fn aws_lambda_ric_node_runs_unchanged_in_an_image() {
    check_client_image(Ric::Node);
}

#[test]
fn lambda_runtime_crate_runs_unchanged_in_an_image() {
    check_client_image(Ric::Rust);
}
