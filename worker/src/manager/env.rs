//! The sandbox's environment (Lambda's variables, then the runtime's, then the user's) and its host uid.
use lamina_proto::domain::{FunctionConfig, LATEST, REGION};

/// `PATH` inside the sandbox.
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/opt/bin";
/// `LD_LIBRARY_PATH` inside the sandbox (Lambda's, ending with `/opt/lib`).
pub const SANDBOX_LD_LIBRARY_PATH: &str =
    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib";
/// Where the Runtime API listens inside the sandbox.
pub const RUNTIME_API_ADDR: &str = "127.0.0.1:9001";

/// How a sandbox was initialised (`AWS_LAMBDA_INITIALIZATION_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitType {
    /// Started for an invocation that found no idle sandbox.
    OnDemand,
    /// Started ahead of any invocation for provisioned concurrency.
    ProvisionedConcurrency,
}

impl InitType {
    pub fn as_str(self) -> &'static str {
        match self {
            InitType::OnDemand => "on-demand",
            InitType::ProvisionedConcurrency => "provisioned-concurrency",
        }
    }
}

/// The complete environment of a sandbox, in order: Lambda's variables, `runtime_env` (from
/// `runtimes::runtime_env`), then the user's variables. A user variable never replaces one of Lambda's
/// (validation already refuses the reserved names; this keeps the first value of any duplicate).
pub fn build_env(
    config: &FunctionConfig,
    log_stream: &str,
    init_type: InitType,
    runtime_env: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let spec = &config.spec;
    let version = if config.version.is_empty() {
        LATEST
    } else {
        config.version.as_str()
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: &str| {
        if !env.iter().any(|(existing, _)| existing == k) {
            env.push((k.to_string(), v.to_string()));
        }
    };
    push("_HANDLER", &spec.handler);
    push("AWS_REGION", REGION);
    push("AWS_DEFAULT_REGION", REGION);
    if let Some(exec_env) = spec.runtime.execution_env() {
        push("AWS_EXECUTION_ENV", exec_env);
    }
    push("AWS_LAMBDA_FUNCTION_NAME", &spec.name);
    push(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        &spec.memory_mb.to_string(),
    );
    push("AWS_LAMBDA_FUNCTION_VERSION", version);
    push("AWS_LAMBDA_INITIALIZATION_TYPE", init_type.as_str());
    push(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        &spec.logging.log_group_of(&spec.name),
    );
    // The function's LoggingConfig, as Lambda passes it to runtimes and logging libraries.
    if spec.logging.is_json() {
        push("AWS_LAMBDA_LOG_FORMAT", "JSON");
        let level = match spec.logging.application_log_level.as_str() {
            "" => "INFO",
            level => level,
        };
        push("AWS_LAMBDA_LOG_LEVEL", level);
    }
    push("AWS_LAMBDA_LOG_STREAM_NAME", log_stream);
    push("AWS_LAMBDA_RUNTIME_API", RUNTIME_API_ADDR);
    push("LAMBDA_TASK_ROOT", "/var/task");
    push("LAMBDA_RUNTIME_DIR", "/var/runtime");
    push("TZ", ":UTC");
    push("LANG", "en_US.UTF-8");
    push("PATH", SANDBOX_PATH);
    push("LD_LIBRARY_PATH", SANDBOX_LD_LIBRARY_PATH);
    for (k, v) in &runtime_env {
        push(k, v);
    }
    for (k, v) in &spec.environment {
        push(k, v);
    }
    env
}

/// Lambda's log stream name: `YYYY/MM/DD/[$LATEST]<32 hex>` (UTC date of `epoch_secs`).
pub fn log_stream_name(epoch_secs: u64, version: &str, sandbox_hex: &str) -> String {
    let (y, m, d) = lamina_proto::time::civil_from_days((epoch_secs / 86_400) as i64);
    let version = if version.is_empty() { LATEST } else { version };
    format!("{y:04}/{m:02}/{d:02}/[{version}]{sandbox_hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_proto::domain::{FunctionSpec, Runtime};
    use std::collections::BTreeMap;

    fn config(runtime: Runtime) -> FunctionConfig {
        let mut environment = BTreeMap::new();
        environment.insert("GREETING".to_string(), "hi".to_string());
        environment.insert("PATH".to_string(), "/evil".to_string());
        FunctionConfig {
            spec: FunctionSpec {
                name: "hello".to_string(),
                runtime,
                handler: "app.handler".to_string(),
                memory_mb: 256,
                timeout_s: 3,
                ephemeral_storage_mb: 512,
                environment,
                description: String::new(),
                layers: Vec::new(),
                package_type: Default::default(),
                image_config: Default::default(),
                vpc_config: None,
                role: String::new(),
                logging: Default::default(),
            },
            code_sha256: "0".repeat(64),
            code_size: 1,
            revision_id: "r1".to_string(),
            version: String::new(),
            last_modified_ms: 0,
            layers: Vec::new(),
            image: None,
        }
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_logging_config_reaches_the_function_as_on_lambda() {
        let mut c = config(Runtime::Python311);
        let env = build_env(&c, "s", InitType::OnDemand, Vec::new());
        assert_eq!(get(&env, "AWS_LAMBDA_LOG_FORMAT"), None);
        assert_eq!(get(&env, "AWS_LAMBDA_LOG_LEVEL"), None);
        c.spec.logging = lamina_proto::domain::LoggingConfig {
            log_format: "JSON".to_string(),
            log_group: "/custom/group".to_string(),
            ..Default::default()
        };
        let env = build_env(&c, "s", InitType::OnDemand, Vec::new());
        assert_eq!(get(&env, "AWS_LAMBDA_LOG_FORMAT"), Some("JSON"));
        assert_eq!(get(&env, "AWS_LAMBDA_LOG_LEVEL"), Some("INFO"));
        assert_eq!(
            get(&env, "AWS_LAMBDA_LOG_GROUP_NAME"),
            Some("/custom/group")
        );
        c.spec.logging.application_log_level = "ERROR".to_string();
        let env = build_env(&c, "s", InitType::OnDemand, Vec::new());
        assert_eq!(get(&env, "AWS_LAMBDA_LOG_LEVEL"), Some("ERROR"));
    }

    #[test]
    fn lambda_variables_then_runtime_then_user() {
        let rt = vec![("PYTHONPATH".to_string(), "/var/runtime".to_string())];
        let env = build_env(
            &config(Runtime::Python311),
            "2024/01/02/[$LATEST]ab",
            InitType::OnDemand,
            rt,
        );
        assert_eq!(get(&env, "_HANDLER"), Some("app.handler"));
        assert_eq!(get(&env, "AWS_REGION"), Some(REGION));
        assert_eq!(get(&env, "AWS_DEFAULT_REGION"), Some(REGION));
        assert_eq!(
            get(&env, "AWS_EXECUTION_ENV"),
            Some("AWS_Lambda_python3.11")
        );
        assert_eq!(get(&env, "AWS_LAMBDA_FUNCTION_NAME"), Some("hello"));
        assert_eq!(get(&env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("256"));
        assert_eq!(get(&env, "AWS_LAMBDA_FUNCTION_VERSION"), Some("$LATEST"));
        assert_eq!(
            get(&env, "AWS_LAMBDA_INITIALIZATION_TYPE"),
            Some("on-demand")
        );
        assert_eq!(
            get(&env, "AWS_LAMBDA_LOG_GROUP_NAME"),
            Some("/aws/lambda/hello")
        );
        assert_eq!(
            get(&env, "AWS_LAMBDA_LOG_STREAM_NAME"),
            Some("2024/01/02/[$LATEST]ab")
        );
        assert_eq!(get(&env, "AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9001"));
        assert_eq!(get(&env, "LAMBDA_TASK_ROOT"), Some("/var/task"));
        assert_eq!(get(&env, "LAMBDA_RUNTIME_DIR"), Some("/var/runtime"));
        assert_eq!(get(&env, "TZ"), Some(":UTC"));
        assert_eq!(get(&env, "LANG"), Some("en_US.UTF-8"));
        assert_eq!(
            get(&env, "PATH"),
            Some(SANDBOX_PATH),
            "a user variable never replaces Lambda's"
        );
        assert!(get(&env, "LD_LIBRARY_PATH").unwrap().ends_with(":/opt/lib"));
        assert_eq!(get(&env, "PYTHONPATH"), Some("/var/runtime"));
        assert_eq!(get(&env, "GREETING"), Some("hi"));
        let pos = |k: &str| env.iter().position(|(key, _)| key == k).unwrap();
        assert!(pos("LD_LIBRARY_PATH") < pos("PYTHONPATH") && pos("PYTHONPATH") < pos("GREETING"));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len(), "no duplicate names: {names:?}");
    }

    #[test]
    fn provided_has_no_execution_env() {
        let env = build_env(
            &config(Runtime::Provided),
            "s",
            InitType::OnDemand,
            Vec::new(),
        );
        assert_eq!(get(&env, "AWS_EXECUTION_ENV"), None);
        let env = build_env(
            &config(Runtime::Provided),
            "s",
            InitType::ProvisionedConcurrency,
            Vec::new(),
        );
        assert_eq!(
            get(&env, "AWS_LAMBDA_INITIALIZATION_TYPE"),
            Some("provisioned-concurrency")
        );
        assert_eq!(get(&env, "_HANDLER"), Some("app.handler"));
    }

    #[test]
    fn log_stream_uses_the_utc_date() {
        assert_eq!(log_stream_name(0, "", "ab"), "1970/01/01/[$LATEST]ab");
        // 2024-02-29T12:00:00Z
        assert_eq!(
            log_stream_name(1_709_208_000, "$LATEST", "cd"),
            "2024/02/29/[$LATEST]cd"
        );
    }
}
