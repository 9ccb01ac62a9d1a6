//! A function on the official `lambda_runtime` crate, run unchanged as a Lamina `provided` function.
//! The event picks what it does: `{"mode":"ok"}` answers what the runtime client saw (request id,
//! deadline, invoked ARN, client context, function name/version/memory from the environment),
//! `"error"` returns a handled error, `"panic"` panics in the handler, `"sleep"` sleeps `ms`.
//! With `LAMINA_TEST_INIT_FAIL=1` in its environment it fails before the runtime starts (init).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

/// The handled error the function returns for `{"mode":"error"}`.
#[derive(Debug)]
struct CustomerError(String);

impl From<CustomerError> for Diagnostic {
    fn from(e: CustomerError) -> Diagnostic {
        Diagnostic {
            error_type: "CustomerError".into(),
            error_message: e.0,
        }
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, CustomerError> {
    let (payload, ctx) = event.into_parts();
    match payload["mode"].as_str().unwrap_or("ok") {
        "error" => return Err(CustomerError("rust says no".to_string())),
        "panic" => panic!("rust handler panicked on purpose"),
        "sleep" => {
            let ms = payload["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        _ => {}
    }
    let client_context = ctx.client_context.as_ref().map(|cc| {
        json!({
            "installation_id": cc.client.installation_id,
            "app_title": cc.client.app_title,
            "custom": cc.custom,
            "env": cc.environment,
        })
    });
    Ok(json!({
        "client": "lambda_runtime",
        "request_id": ctx.request_id,
        "deadline_ms": ctx.deadline,
        "remaining_ms": ctx.deadline as i64 - epoch_ms() as i64,
        "invoked_function_arn": ctx.invoked_function_arn,
        "trace_id": ctx.xray_trace_id,
        "client_context": client_context,
        "function_name": ctx.env_config.function_name,
        "function_version": ctx.env_config.version,
        "memory_mb": ctx.env_config.memory,
        "event": payload,
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    if std::env::var("LAMINA_TEST_INIT_FAIL").as_deref() == Ok("1") {
        eprintln!("rust init failed on purpose");
        std::process::exit(3);
    }
    lambda_runtime::run(service_fn(handler)).await
}
