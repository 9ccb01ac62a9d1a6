//! Lambda configuration that Lamina keeps as sent or refuses (REST API fidelity): the execution
//! role, the logging configuration, the architectures and the tracing mode.
use super::ValidationError;

/// Longest execution role ARN (IAM's limit for an ARN).
pub const MAX_ROLE_LEN: usize = 2048;

/// An execution role: "" (none given) or `arn:aws[-PARTITION]:iam::ACCOUNT12:role/PATH/NAME`
/// (Lambda's `RoleArn` pattern).
pub fn role(role: &str) -> Result<(), ValidationError> {
    if role.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        ValidationError::new(
            "role",
            format!(
                "role must be an IAM role ARN like arn:aws:iam::123456789012:role/NAME ({why}), got {:?}",
                truncated(role, 80)
            ),
        )
    };
    if role.len() > MAX_ROLE_LEN {
        return Err(bad("at most 2048 characters"));
    }
    let rest = role
        .strip_prefix("arn:")
        .ok_or_else(|| bad("it must start with arn:"))?;
    let (partition, rest) = rest.split_once(':').ok_or_else(|| bad("no partition"))?;
    let partition_ok = partition.is_empty()
        || partition
            .strip_prefix("aws")
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_alphabetic() || c == '-'));
    if !partition_ok {
        return Err(bad("the partition must be aws or aws-*"));
    }
    let rest = rest
        .strip_prefix("iam::")
        .ok_or_else(|| bad("the service must be iam"))?;
    let (account, path) = rest.split_once(':').ok_or_else(|| bad("no account"))?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the account must be 12 digits"));
    }
    let name = path
        .strip_prefix("role")
        .ok_or_else(|| bad("the resource must be role/NAME"))?;
    let name = name.strip_prefix('/').unwrap_or(name);
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_/".contains(c));
    if !name_ok {
        return Err(bad("the role name is letters, digits and +=,.@-_/"));
    }
    Ok(())
}

/// Lambda's `LoggingConfig`: known formats and levels (levels only with the JSON format), a log
/// group of 1..512 characters of `[.-_/#A-Za-z0-9]`.
pub fn logging(c: &crate::domain::LoggingConfig) -> Result<(), ValidationError> {
    let one_of = |field: &str, value: &str, allowed: &[&str]| {
        if value.is_empty() || allowed.contains(&value) {
            Ok(())
        } else {
            Err(ValidationError::new(
                "logging_config",
                format!(
                    "LoggingConfig {field} must be one of {}, got {:?}",
                    allowed.join(", "),
                    truncated(value, 40)
                ),
            ))
        }
    };
    one_of("LogFormat", &c.log_format, &["Text", "JSON"])?;
    one_of(
        "ApplicationLogLevel",
        &c.application_log_level,
        &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"],
    )?;
    one_of(
        "SystemLogLevel",
        &c.system_log_level,
        &["DEBUG", "INFO", "WARN"],
    )?;
    let levels_given = !c.application_log_level.is_empty() || !c.system_log_level.is_empty();
    if levels_given && !c.is_json() {
        return Err(ValidationError::new(
            "logging_config",
            "LoggingConfig ApplicationLogLevel and SystemLogLevel need LogFormat JSON",
        ));
    }
    let group_ok = c.log_group.len() <= 512
        && c.log_group
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ".-_/#".contains(ch));
    if !group_ok {
        return Err(ValidationError::new(
            "logging_config",
            format!(
                "LoggingConfig LogGroup must be 1..512 characters of letters, digits and .-_/#, got {:?}",
                truncated(&c.log_group, 80)
            ),
        ));
    }
    Ok(())
}

/// A function's architectures: none (the host's) or exactly the host's. Lamina runs code natively
/// on the workers' architecture, so another one cannot be honoured and is refused.
pub fn architectures(list: &[String]) -> Result<(), ValidationError> {
    let host = crate::domain::host_architecture();
    match list {
        [] => Ok(()),
        [a] if a == host => Ok(()),
        [a] if a == "x86_64" || a == "arm64" => Err(ValidationError::new(
            "architectures",
            format!(
                "architecture {a} cannot be honoured: Lamina's workers run functions natively on \
                 {host}; use Architectures [\"{host}\"] (or leave it out)"
            ),
        )),
        [a] => Err(ValidationError::new(
            "architectures",
            format!(
                "Architectures must be [\"x86_64\"] or [\"arm64\"], got {:?}",
                truncated(a, 40)
            ),
        )),
        _ => Err(ValidationError::new(
            "architectures",
            format!(
                "Architectures takes exactly one architecture, got {}",
                list.len()
            ),
        )),
    }
}

/// `TracingConfig.Mode`: "" or `PassThrough`. `Active` (sampling and sending traces to X-Ray) is
/// refused: Lamina has no X-Ray to send them to.
pub fn tracing_mode(mode: &str) -> Result<(), ValidationError> {
    match mode {
        "" | "PassThrough" => Ok(()),
        "Active" => Err(ValidationError::new(
            "tracing_mode",
            "TracingConfig Mode Active cannot be honoured: Lamina has no X-Ray to send traces \
             to; use PassThrough (or leave TracingConfig out)",
        )),
        other => Err(ValidationError::new(
            "tracing_mode",
            format!(
                "TracingConfig Mode must be Active or PassThrough, got {:?}",
                truncated(other, 40)
            ),
        )),
    }
}

/// At most `max` characters of `s` (what an error message quotes of a long input).
pub(crate) fn truncated(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{host_architecture, LoggingConfig, Runtime};
    use crate::validate::{handler, runtime};

    #[test]
    fn roles_follow_iam_arns() {
        for ok in [
            "",
            "arn:aws:iam::123456789012:role/service-role/my-fn_role",
            "arn:aws-us-gov:iam::123456789012:role/x",
        ] {
            assert!(role(ok).is_ok(), "{ok}");
        }
        for bad in [
            "lamina",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::1234:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
        ] {
            assert!(
                role(bad).unwrap_err().to_string().contains("IAM role ARN"),
                "{bad}"
            );
        }
        assert!(role(&format!(
            "arn:aws:iam::123456789012:role/{}",
            "a".repeat(3000)
        ))
        .is_err());
    }

    #[test]
    fn logging_levels_need_json() {
        let json = LoggingConfig {
            log_format: "JSON".into(),
            application_log_level: "DEBUG".into(),
            system_log_level: "WARN".into(),
            log_group: "/custom/group".into(),
        };
        assert!(logging(&json).is_ok());
        let text = LoggingConfig {
            log_format: "Text".into(),
            ..json.clone()
        };
        assert!(logging(&text)
            .unwrap_err()
            .to_string()
            .contains("need LogFormat JSON"));
        let loud = LoggingConfig {
            application_log_level: "LOUD".into(),
            ..json.clone()
        };
        assert!(logging(&loud)
            .unwrap_err()
            .to_string()
            .contains("ApplicationLogLevel"));
        let group = LoggingConfig {
            log_group: "a b".into(),
            ..json
        };
        assert!(logging(&group).is_err());
    }

    #[test]
    fn only_the_hosts_architecture_and_no_active_tracing() {
        let host = host_architecture().to_string();
        assert!(architectures(&[]).is_ok());
        assert!(architectures(std::slice::from_ref(&host)).is_ok());
        let other = if host == "arm64" { "x86_64" } else { "arm64" };
        let e = architectures(&[other.to_string()]).unwrap_err().to_string();
        assert!(e.contains("cannot be honoured") && e.contains(&host), "{e}");
        assert!(architectures(&["mips".into()]).is_err());
        assert!(architectures(&[host.clone(), host]).is_err());
        assert!(tracing_mode("PassThrough").is_ok() && tracing_mode("").is_ok());
        assert!(tracing_mode("Active")
            .unwrap_err()
            .to_string()
            .contains("X-Ray"));
        assert!(tracing_mode("Loud").is_err());
    }

    #[test]
    fn os_only_runtimes_are_kept_as_named() {
        for name in ["provided", "provided.al2", "provided.al2023"] {
            let r = runtime(name).unwrap();
            assert_eq!(r.as_str(), name);
            assert!(r.is_provided());
            assert!(handler(r, "anything").is_ok());
        }
        assert!(!Runtime::Python311.is_provided());
    }
}
