//! SSM Parameter Store: `String`, `StringList` and `SecureString` parameters with versions,
//! hierarchies (`/a/b/c`) and `name:version` selectors. A `SecureString` is sealed under the
//! master key (bound to its name and version) and answered encrypted unless `WithDecryption`.
use base64::Engine;

use super::{authorize, lock, SecretsError};
use crate::api::{now_ms, ApiError, Shared};
use crate::crypto::Sealed;
use crate::iam;
use crate::store::parameters::{ParameterVersion, StoredValue};

const LOCK_KIND: u8 = b'p';
/// Parameter Store keeps the 100 newest versions of a parameter.
const MAX_VERSIONS: u64 = 100;
const MAX_LEVELS: usize = 15;
const DEFAULT_KEY: &str = "alias/aws/ssm";

/// What went wrong, with SSM's error codes ([`ParameterError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum ParameterError {
    #[error("parameter `{0}` not found")]
    NotFound(String),
    #[error("version {version} of parameter `{name}` not found")]
    VersionNotFound { name: String, version: String },
    #[error("parameter `{0}` already exists: pass Overwrite to put a new version")]
    Exists(String),
    #[error("{0}")]
    Validation(String),
    #[error("parameter type {0:?} is not supported: use String, StringList or SecureString")]
    UnsupportedType(String),
    #[error("parameter name `{0}` has more than 15 levels")]
    HierarchyLevel(String),
    #[error("AllowedPattern {0:?}: Lamina does not check allowed patterns yet; put the parameter without one")]
    InvalidAllowedPattern(String),
    #[error("the NextToken is not one this service gave: start again without it")]
    InvalidNextToken,
    #[error("SecureString `{0}` does not decrypt under this controller's master key (restore DATA_DIR/auth/master.key from a backup)")]
    Decryption(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<SecretsError> for ParameterError {
    fn from(e: SecretsError) -> ParameterError {
        match e {
            SecretsError::Api(a) => ParameterError::Api(a),
            other => ParameterError::Validation(other.to_string()),
        }
    }
}

impl ParameterError {
    /// SSM's error code (botocore's exception class) and whether it is the service's fault.
    pub fn code(&self) -> (&'static str, bool) {
        match self {
            ParameterError::NotFound(_) => ("ParameterNotFound", false),
            ParameterError::VersionNotFound { .. } => ("ParameterVersionNotFound", false),
            ParameterError::Exists(_) => ("ParameterAlreadyExists", false),
            ParameterError::Validation(_) => ("ValidationException", false),
            ParameterError::UnsupportedType(_) => ("UnsupportedParameterType", false),
            ParameterError::HierarchyLevel(_) => ("HierarchyLevelLimitExceededException", false),
            ParameterError::InvalidAllowedPattern(_) => ("InvalidAllowedPatternException", false),
            ParameterError::InvalidNextToken => ("InvalidNextToken", false),
            ParameterError::Decryption(_) | ParameterError::Api(_) => ("InternalServerError", true),
        }
    }
}

/// `PutParameter`'s input.
#[derive(Default)]
pub struct PutInput {
    pub name: String,
    pub value: String,
    pub kind: Option<String>,
    pub description: Option<String>,
    pub key_id: Option<String>,
    pub overwrite: bool,
    pub allowed_pattern: Option<String>,
    pub tier: Option<String>,
    pub data_type: Option<String>,
}

impl std::fmt::Debug for PutInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutInput")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A parameter as `GetParameter(s)` answers it: the stored version and its value, decrypted
/// or not.
pub struct Answer {
    pub version: ParameterVersion,
    pub value: String,
    /// `:VERSION` when the caller selected one.
    pub selector: Option<String>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

pub fn arn(name: &str) -> String {
    iam::arn::parameter(name)
}

/// The name an ARN or a name gives (`arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`).
fn plain_name(name: &str) -> String {
    match name
        .strip_prefix("arn:aws:ssm:")
        .and_then(|r| r.split_once(":parameter"))
    {
        Some((_, tail)) if tail.starts_with("//") => tail[1..].to_string(),
        Some((_, tail)) => {
            let tail = tail.strip_prefix('/').unwrap_or(tail);
            // A hierarchical name keeps its leading slash.
            if tail.contains('/') {
                format!("/{tail}")
            } else {
                tail.to_string()
            }
        }
        None => name.to_string(),
    }
}

pub fn check_name(name: &str) -> Result<(), ParameterError> {
    let bad = |why: &str| {
        Err(ParameterError::Validation(format!(
            "parameter name {name:?}: {why}"
        )))
    };
    if name.is_empty() || name.len() > 1011 {
        return bad("must be 1 to 1011 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
    {
        return bad("use only letters, digits and _.-/");
    }
    if name.contains('/') && !name.starts_with('/') {
        return bad("a name with a path must begin with /");
    }
    if name.ends_with('/') || name.contains("//") {
        return bad("path segments must not be empty");
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return bad("names beginning with aws or ssm are reserved");
    }
    if name.matches('/').count() > MAX_LEVELS {
        return Err(ParameterError::HierarchyLevel(name.to_string()));
    }
    Ok(())
}

fn aad(name: &str, version: u64) -> Vec<u8> {
    format!("ssm\0{name}\0{version}").into_bytes()
}

/// The caller's ARN, for `LastModifiedUser`.
fn caller_arn(ext: &http::Extensions) -> String {
    match ext.get::<lamina_proto::auth::Caller>() {
        Some(c) => iam::arn::access_key(&c.access_key_id),
        None => format!("arn:aws:iam::{}:root", iam::ACCOUNT_ID),
    }
}

pub async fn put(
    shared: &Shared,
    ext: &http::Extensions,
    input: PutInput,
) -> Result<(u64, String), ParameterError> {
    let name = plain_name(&input.name);
    check_name(&name)?;
    authorize(shared, ext, "ssm:PutParameter", &arn(&name)).await?;
    if let Some(d) = &input.description {
        if d.chars().count() > 1024 {
            return Err(ParameterError::Validation(
                "Description must be at most 1024 characters".to_string(),
            ));
        }
    }
    let tier = match input.tier.as_deref() {
        None | Some("Standard") | Some("Intelligent-Tiering") => "Standard",
        Some("Advanced") => "Advanced",
        Some(t) => {
            return Err(ParameterError::Validation(format!(
                "Tier must be Standard, Advanced or Intelligent-Tiering, got {t:?}"
            )))
        }
    };
    let max = if tier == "Advanced" { 8192 } else { 4096 };
    if input.value.is_empty() || input.value.len() > max {
        return Err(ParameterError::Validation(format!(
            "a {tier} parameter's value must be 1 to {max} bytes, got {}",
            input.value.len()
        )));
    }
    let data_type = input
        .data_type
        .clone()
        .unwrap_or_else(|| "text".to_string());
    if data_type != "text" {
        return Err(ParameterError::Validation(format!(
            "DataType {data_type:?} is not supported: use text"
        )));
    }
    if let Some(p) = &input.allowed_pattern {
        return Err(ParameterError::InvalidAllowedPattern(p.clone()));
    }
    let _guard = lock(LOCK_KIND, &name).await;
    let n = name.clone();
    let current = shared.store(move |s| s.get_parameter(&n)).await?;
    if current.is_some() && !input.overwrite {
        return Err(ParameterError::Exists(name));
    }
    let kind = match (&input.kind, &current) {
        (Some(k), _) => k.clone(),
        (None, Some(c)) => c.kind.clone(),
        (None, None) => {
            return Err(ParameterError::Validation(
                "Type is required for a new parameter (String, StringList or SecureString)"
                    .to_string(),
            ))
        }
    };
    if !["String", "StringList", "SecureString"].contains(&kind.as_str()) {
        return Err(ParameterError::UnsupportedType(kind));
    }
    let version = current.as_ref().map_or(0, |c| c.version) + 1;
    let value = if kind == "SecureString" {
        StoredValue::Sealed(
            shared
                .master_key
                .seal(&aad(&name, version), input.value.as_bytes()),
        )
    } else {
        StoredValue::Plain(input.value.clone())
    };
    let record = ParameterVersion {
        name: name.clone(),
        version,
        kind: kind.clone(),
        value,
        description: input
            .description
            .or_else(|| current.as_ref().and_then(|c| c.description.clone())),
        key_id: (kind == "SecureString").then(|| {
            input
                .key_id
                .clone()
                .unwrap_or_else(|| DEFAULT_KEY.to_string())
        }),
        allowed_pattern: input.allowed_pattern,
        tier: tier.to_string(),
        data_type,
        modified_ms: now_ms(),
        modified_user: caller_arn(ext),
        labels: Vec::new(),
    };
    let keep_from = (version + 1).saturating_sub(MAX_VERSIONS);
    shared
        .store(move |s| s.put_parameter_version(&record, keep_from))
        .await?;
    Ok((version, tier.to_string()))
}

/// A `SecureString`'s value as answered without `WithDecryption`: its ciphertext (base64),
/// which only the master key opens.
fn encrypted_looking(sealed: &Sealed) -> String {
    sealed.ciphertext.clone()
}

fn answer(
    shared: &Shared,
    p: ParameterVersion,
    decrypt: bool,
    selector: Option<String>,
) -> Result<Answer, ParameterError> {
    let value = match &p.value {
        StoredValue::Plain(v) => v.clone(),
        StoredValue::Sealed(sealed) if decrypt => {
            let bytes = shared
                .master_key
                .open(&aad(&p.name, p.version), sealed)
                .map_err(|_| ParameterError::Decryption(p.name.clone()))?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        StoredValue::Sealed(sealed) => encrypted_looking(sealed),
    };
    Ok(Answer {
        version: p,
        value,
        selector,
    })
}

/// `GetParameter`: `NAME` (the newest version) or `NAME:VERSION`.
pub async fn get(
    shared: &Shared,
    ext: &http::Extensions,
    name: &str,
    decrypt: bool,
) -> Result<Answer, ParameterError> {
    get_as(shared, ext, name, decrypt, "ssm:GetParameter").await
}

/// [`get`], authorised as `action` (`GetParameters` has its own).
async fn get_as(
    shared: &Shared,
    ext: &http::Extensions,
    name: &str,
    decrypt: bool,
    action: &str,
) -> Result<Answer, ParameterError> {
    // `NAME:SELECTOR`, or an ARN (five colons) with `:SELECTOR` after it.
    let (base, selector) = if name.starts_with("arn:") {
        let parts: Vec<&str> = name.splitn(7, ':').collect();
        if parts.len() == 7 {
            (parts[..6].join(":"), Some(parts[6].to_string()))
        } else {
            (name.to_string(), None)
        }
    } else {
        match name.rsplit_once(':') {
            Some((n, s)) => (n.to_string(), Some(s.to_string())),
            None => (name.to_string(), None),
        }
    };
    let plain = plain_name(&base);
    check_name(&plain)?;
    authorize(shared, ext, action, &arn(&plain)).await?;
    let n = plain.clone();
    let Some(newest) = shared.store(move |s| s.get_parameter(&n)).await? else {
        return Err(ParameterError::NotFound(plain));
    };
    let Some(selector) = selector else {
        return answer(shared, newest, decrypt, None);
    };
    let Ok(version) = selector.parse::<u64>() else {
        // Labels are not kept: no label selects a version.
        return Err(ParameterError::NotFound(format!("{plain}:{selector}")));
    };
    let n = plain.clone();
    let found = shared
        .store(move |s| s.get_parameter_version(&n, version))
        .await?;
    match found {
        Some(p) => answer(shared, p, decrypt, Some(format!(":{version}"))),
        None => Err(ParameterError::VersionNotFound {
            name: plain,
            version: selector,
        }),
    }
}

/// `GetParameters`: the found ones, and the names that are not.
pub async fn get_many(
    shared: &Shared,
    ext: &http::Extensions,
    names: &[String],
    decrypt: bool,
) -> Result<(Vec<Answer>, Vec<String>), ParameterError> {
    if names.is_empty() || names.len() > 10 {
        return Err(ParameterError::Validation(format!(
            "Names must list 1 to 10 parameters, got {}",
            names.len()
        )));
    }
    let (mut found, mut invalid) = (Vec::new(), Vec::new());
    for name in names {
        match get_as(shared, ext, name, decrypt, "ssm:GetParameters").await {
            Ok(a) => found.push(a),
            Err(
                ParameterError::NotFound(_)
                | ParameterError::VersionNotFound { .. }
                | ParameterError::Validation(_)
                | ParameterError::HierarchyLevel(_),
            ) => invalid.push(name.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok((found, invalid))
}

fn decode_token(token: Option<&str>) -> Result<String, ParameterError> {
    match token {
        None => Ok(String::new()),
        Some(t) => base64::engine::general_purpose::STANDARD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("after:").map(str::to_string))
            .ok_or(ParameterError::InvalidNextToken),
    }
}

fn encode_token(after: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("after:{after}"))
}

/// `GetParametersByPath`: the parameters under `path` (one level, or every level when
/// `recursive`), in name order, a page at a time.
pub async fn by_path(
    shared: &Shared,
    ext: &http::Extensions,
    path: &str,
    recursive: bool,
    decrypt: bool,
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> Result<(Vec<Answer>, Option<String>), ParameterError> {
    if path != "/" && check_name(path.trim_end_matches('/')).is_err() || !path.starts_with('/') {
        return Err(ParameterError::Validation(format!(
            "Path {path:?} must begin with /"
        )));
    }
    authorize(shared, ext, "ssm:GetParametersByPath", &arn(path)).await?;
    let limit = match max_results {
        None => 10,
        Some(n @ 1..=10) => n as usize,
        Some(n) => {
            return Err(ParameterError::Validation(format!(
                "MaxResults must be 1 to 10, got {n}"
            )))
        }
    };
    let after = decode_token(next_token)?;
    let prefix = if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    let within = prefix.clone();
    // One more than a page tells whether there is a next one.
    let mut page = shared
        .store(move |s| {
            s.list_parameters(&within, &after, limit + 1, &mut |p| {
                recursive || !p.name[within.len()..].contains('/')
            })
        })
        .await?;
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|p| encode_token(&p.name))
    } else {
        None
    };
    let answers = page
        .into_iter()
        .map(|p| answer(shared, p, decrypt, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((answers, next))
}

pub async fn delete(
    shared: &Shared,
    ext: &http::Extensions,
    name: &str,
) -> Result<(), ParameterError> {
    let name = plain_name(name);
    check_name(&name)?;
    authorize(shared, ext, "ssm:DeleteParameter", &arn(&name)).await?;
    let _guard = lock(LOCK_KIND, &name).await;
    let n = name.clone();
    if shared.store(move |s| s.delete_parameter(&n)).await? {
        Ok(())
    } else {
        Err(ParameterError::NotFound(name))
    }
}

/// `DeleteParameters`: the deleted names and the names that were not found.
pub async fn delete_many(
    shared: &Shared,
    ext: &http::Extensions,
    names: &[String],
) -> Result<(Vec<String>, Vec<String>), ParameterError> {
    if names.is_empty() || names.len() > 10 {
        return Err(ParameterError::Validation(format!(
            "Names must list 1 to 10 parameters, got {}",
            names.len()
        )));
    }
    let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
    for name in names {
        match delete(shared, ext, name).await {
            Ok(()) => deleted.push(name.clone()),
            Err(ParameterError::NotFound(_) | ParameterError::Validation(_)) => {
                invalid.push(name.clone())
            }
            Err(e) => return Err(e),
        }
    }
    Ok((deleted, invalid))
}

/// `GetParameterHistory`: every kept version, oldest first, a page at a time (1 to 50).
pub async fn history(
    shared: &Shared,
    ext: &http::Extensions,
    name: &str,
    decrypt: bool,
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> Result<(Vec<Answer>, Option<String>), ParameterError> {
    let name = plain_name(name);
    check_name(&name)?;
    authorize(shared, ext, "ssm:GetParameterHistory", &arn(&name)).await?;
    let limit = match max_results {
        None => 50,
        Some(n @ 1..=50) => n as usize,
        Some(n) => {
            return Err(ParameterError::Validation(format!(
                "MaxResults must be 1 to 50, got {n}"
            )))
        }
    };
    let after: u64 = match next_token {
        None => 0,
        Some(_) => decode_token(next_token)?
            .parse()
            .map_err(|_| ParameterError::InvalidNextToken)?,
    };
    let n = name.clone();
    let exists = shared.store(move |s| s.get_parameter(&n)).await?.is_some();
    if !exists {
        return Err(ParameterError::NotFound(name));
    }
    let n = name.clone();
    let mut page = shared
        .store(move |s| s.parameter_history(&n, after, limit + 1))
        .await?;
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|p| encode_token(&p.version.to_string()))
    } else {
        None
    };
    let answers = page
        .into_iter()
        .map(|p| answer(shared, p, decrypt, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((answers, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_parameter_stores_rules() {
        for ok in ["db-host", "/app/prod/db.host", "a_b", "/x"] {
            check_name(ok).unwrap();
        }
        for bad in [
            "", "app/x", "/app/", "/a//b", "aws-x", "/ssm/x", "a b", "a\0b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let deep = "/a".repeat(16);
        assert!(matches!(
            check_name(&deep),
            Err(ParameterError::HierarchyLevel(_))
        ));
        check_name(&"/a".repeat(15)).unwrap();
    }

    #[test]
    fn arns_name_parameters() {
        assert_eq!(plain_name(&arn("/app/x")), "/app/x");
        assert_eq!(plain_name(&arn("flat")), "flat");
        assert_eq!(plain_name("flat"), "flat");
    }

    #[test]
    fn error_codes_are_ssms() {
        assert_eq!(
            ParameterError::NotFound("x".into()).code().0,
            "ParameterNotFound"
        );
        assert_eq!(
            ParameterError::Exists("x".into()).code().0,
            "ParameterAlreadyExists"
        );
        assert_eq!(
            ParameterError::VersionNotFound {
                name: "x".into(),
                version: "3".into()
            }
            .code()
            .0,
            "ParameterVersionNotFound"
        );
    }
}
