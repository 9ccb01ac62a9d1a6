//! Resource-based policies on functions: `AddPermission`, `RemovePermission` and `GetPolicy`, the
//! transport-neutral core the REST API and the gRPC `Functions` service share. A function has one
//! policy per qualifier (the unqualified function, each version, each alias), kept in its settings
//! (`store::FunctionPolicy`, deleted with it) as the JSON document `GetPolicy` returns, with its
//! own revision id. `Shared::authorize` evaluates it for `lambda:` actions on that ARN.
use serde_json::{json, Map, Value};

use super::{functions, versions, ApiError, Shared};
use crate::iam::{self, Policy, PolicyError};
use crate::store::FunctionPolicy;

/// One policy edit at a time: each is a read, a change and a write of the whole document.
static POLICY_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, thiserror::Error)]
pub enum PermissionError {
    #[error("the statement id `{sid}` already exists in the policy of `{function}`: pick another StatementId or remove it first")]
    StatementExists { function: String, sid: String },
    #[error("the statement id `{sid}` does not exist in the policy of `{function}`: `GetPolicy` lists the statements")]
    StatementNotFound { function: String, sid: String },
    #[error("`{0}` has no resource-based policy: `AddPermission` creates one")]
    NoPolicy(String),
    #[error("the revision id of the policy of `{function}` is {actual}, not {expected}: get the policy again and retry with its RevisionId")]
    Revision {
        function: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the policy of `{function}` would be too long: {source}; remove statements first")]
    TooLong {
        function: String,
        source: PolicyError,
    },
}

/// An `AddPermission` request.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewPermission {
    pub function_name: String,
    /// "" for the unqualified function.
    pub qualifier: String,
    pub statement_id: String,
    pub action: String,
    pub principal: String,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
    pub principal_org_id: Option<String>,
    pub event_source_token: Option<String>,
    pub function_url_auth_type: Option<String>,
    pub revision_id: Option<String>,
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::Permission(PermissionError::Invalid(m.into()))
}

/// The function (and version or alias) must exist; its ARN as the policy names it.
async fn target(shared: &Shared, name: &str, qualifier: &str) -> Result<String, ApiError> {
    functions::get(shared, name).await?;
    if !qualifier.is_empty() && qualifier != lamina_proto::domain::LATEST {
        versions::get_qualified(shared, name, qualifier).await?;
    }
    Ok(iam::arn::function(name, Some(qualifier)))
}

/// `function` or `function:qualifier`, for messages.
fn display(name: &str, qualifier: &str) -> String {
    if qualifier.is_empty() {
        name.to_string()
    } else {
        format!("{name}:{qualifier}")
    }
}

/// Lambda's `Principal` forms: `*`, an account id, an IAM ARN, a service (`s3.amazonaws.com`);
/// and Lamina's access key ids, which name the key's user.
fn principal_json(p: &str) -> Result<Value, ApiError> {
    let p = p.trim();
    if p == "*" {
        return Ok(json!("*"));
    }
    if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(json!({"AWS": format!("arn:aws:iam::{p}:root")}));
    }
    if p.starts_with("arn:aws:iam::") || p.starts_with("arn:aws:sts::") {
        return Ok(json!({ "AWS": p }));
    }
    if p.contains('.') && !p.contains(char::is_whitespace) {
        return Ok(json!({ "Service": p }));
    }
    if !p.is_empty() && p.len() <= 128 && p.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(json!({ "AWS": iam::arn::access_key(p) }));
    }
    Err(invalid(format!(
        "Principal {p:?} is not `*`, an account id, an IAM ARN, a service principal or an access key id"
    )))
}

fn check_statement_id(sid: &str) -> Result<(), ApiError> {
    let ok = !sid.is_empty()
        && sid.len() <= 100
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "StatementId {sid:?} must be 1 to 100 letters, digits, `-` or `_`"
        )))
    }
}

/// The statement `AddPermission` adds, as Lambda writes it.
fn statement(p: &NewPermission, resource: &str) -> Result<Value, ApiError> {
    check_statement_id(&p.statement_id)?;
    let action = p.action.trim();
    let action_ok = action == "*"
        || action.strip_prefix("lambda:").is_some_and(|a| {
            a == "*" || (!a.is_empty() && a.bytes().all(|b| b.is_ascii_alphabetic()))
        });
    if !action_ok {
        return Err(invalid(format!(
            "Action {action:?} must be `lambda:ACTION` (e.g. lambda:InvokeFunction), `lambda:*` or `*`"
        )));
    }
    let mut conditions = Map::new();
    let mut string_equals = Map::new();
    if let Some(a) = p.source_account.as_deref().filter(|s| !s.is_empty()) {
        string_equals.insert("AWS:SourceAccount".into(), json!(a));
    }
    if let Some(o) = p.principal_org_id.as_deref().filter(|s| !s.is_empty()) {
        string_equals.insert("aws:PrincipalOrgID".into(), json!(o));
    }
    if let Some(t) = p.event_source_token.as_deref().filter(|s| !s.is_empty()) {
        string_equals.insert("lambda:EventSourceToken".into(), json!(t));
    }
    if let Some(t) = p
        .function_url_auth_type
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        if t != "NONE" && t != "AWS_IAM" {
            return Err(invalid(format!(
                "FunctionUrlAuthType must be NONE or AWS_IAM, got {t:?}"
            )));
        }
        string_equals.insert("lambda:FunctionUrlAuthType".into(), json!(t));
    }
    if !string_equals.is_empty() {
        conditions.insert("StringEquals".into(), Value::Object(string_equals));
    }
    if let Some(arn) = p.source_arn.as_deref().filter(|s| !s.is_empty()) {
        conditions.insert("ArnLike".into(), json!({ "AWS:SourceArn": arn }));
    }
    let mut s = json!({
        "Sid": p.statement_id,
        "Effect": "Allow",
        "Principal": principal_json(&p.principal)?,
        "Action": action,
        "Resource": resource,
    });
    if !conditions.is_empty() {
        s["Condition"] = Value::Object(conditions);
    }
    Ok(s)
}

/// The stored policy's statements (an empty list when there is none).
fn statements_of(stored: Option<&FunctionPolicy>) -> Result<Vec<Value>, ApiError> {
    let Some(stored) = stored else {
        return Ok(Vec::new());
    };
    let doc: Value = serde_json::from_str(&stored.policy)
        .map_err(|e| ApiError::Internal(format!("stored resource policy is not JSON: {e}")))?;
    Ok(match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => Vec::new(),
    })
}

/// The revision a `RevisionId` is checked against: the policy's, or the function's before it
/// has one (what `GetFunction` shows).
async fn check_revision(
    shared: &Shared,
    name: &str,
    qualifier: &str,
    stored: Option<&FunctionPolicy>,
    expected: Option<&str>,
) -> Result<(), ApiError> {
    let Some(expected) = expected.filter(|r| !r.is_empty()) else {
        return Ok(());
    };
    let actual = match stored {
        Some(p) => p.revision_id.clone(),
        None => functions::get(shared, name).await?.revision_id,
    };
    if actual == expected {
        Ok(())
    } else {
        Err(ApiError::Permission(PermissionError::Revision {
            function: display(name, qualifier),
            expected: expected.to_string(),
            actual,
        }))
    }
}

async fn read(
    shared: &Shared,
    name: &str,
    qualifier: &str,
) -> Result<Option<FunctionPolicy>, ApiError> {
    let (n, q) = (name.to_string(), qualifier.to_string());
    shared.store(move |s| s.get_function_policy(&n, &q)).await
}

async fn write(
    shared: &Shared,
    name: &str,
    qualifier: &str,
    policy: Option<FunctionPolicy>,
) -> Result<(), ApiError> {
    let (n, q) = (name.to_string(), qualifier.to_string());
    shared
        .store(move |s| s.put_function_policy(&n, &q, policy.as_ref()))
        .await
}

/// AddPermission: adds a statement; answers the statement's JSON text.
pub(crate) async fn add_permission(shared: &Shared, p: NewPermission) -> Result<String, ApiError> {
    let (name, qualifier) = (p.function_name.as_str(), p.qualifier.as_str());
    let resource = target(shared, name, qualifier).await?;
    let new = statement(&p, &resource)?;
    let _writes = POLICY_WRITES.lock().await;
    let stored = read(shared, name, qualifier).await?;
    check_revision(
        shared,
        name,
        qualifier,
        stored.as_ref(),
        p.revision_id.as_deref(),
    )
    .await?;
    let mut statements = statements_of(stored.as_ref())?;
    if statements
        .iter()
        .any(|s| s.get("Sid").and_then(Value::as_str) == Some(p.statement_id.as_str()))
    {
        return Err(ApiError::Permission(PermissionError::StatementExists {
            function: display(name, qualifier),
            sid: p.statement_id.clone(),
        }));
    }
    statements.push(new.clone());
    let text =
        json!({"Version": "2012-10-17", "Id": "default", "Statement": statements}).to_string();
    // What authorize will evaluate: it must parse (and fit).
    Policy::parse(&text).map_err(|e| match e {
        e @ PolicyError::TooLarge { .. } => ApiError::Permission(PermissionError::TooLong {
            function: display(name, qualifier),
            source: e,
        }),
        e => invalid(e.to_string()),
    })?;
    write(
        shared,
        name,
        qualifier,
        Some(FunctionPolicy {
            policy: text,
            revision_id: uuid::Uuid::new_v4().to_string(),
        }),
    )
    .await?;
    Ok(new.to_string())
}

/// RemovePermission: removes the statement `sid`; the policy goes with its last statement.
pub(crate) async fn remove_permission(
    shared: &Shared,
    name: &str,
    qualifier: &str,
    sid: &str,
    revision_id: Option<&str>,
) -> Result<(), ApiError> {
    target(shared, name, qualifier).await?;
    let _writes = POLICY_WRITES.lock().await;
    let stored = read(shared, name, qualifier).await?;
    check_revision(shared, name, qualifier, stored.as_ref(), revision_id).await?;
    let mut statements = statements_of(stored.as_ref())?;
    let before = statements.len();
    statements.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(sid));
    if statements.len() == before {
        return Err(ApiError::Permission(PermissionError::StatementNotFound {
            function: display(name, qualifier),
            sid: sid.to_string(),
        }));
    }
    let policy = (!statements.is_empty()).then(|| FunctionPolicy {
        policy: json!({"Version": "2012-10-17", "Id": "default", "Statement": statements})
            .to_string(),
        revision_id: uuid::Uuid::new_v4().to_string(),
    });
    write(shared, name, qualifier, policy).await
}

/// GetPolicy: the document and its revision id.
pub(crate) async fn get_policy(
    shared: &Shared,
    name: &str,
    qualifier: &str,
) -> Result<FunctionPolicy, ApiError> {
    target(shared, name, qualifier).await?;
    read(shared, name, qualifier)
        .await?
        .ok_or_else(|| ApiError::Permission(PermissionError::NoPolicy(display(name, qualifier))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(principal: &str) -> NewPermission {
        NewPermission {
            function_name: "f".into(),
            statement_id: "s1".into(),
            action: "lambda:InvokeFunction".into(),
            principal: principal.into(),
            ..Default::default()
        }
    }

    #[test]
    fn statements_are_written_as_lambda_writes_them() {
        let arn = iam::arn::function("f", None);
        let mut p = new("s3.amazonaws.com");
        p.source_arn = Some("arn:aws:s3:::bucket".into());
        p.source_account = Some("123456789012".into());
        assert_eq!(
            statement(&p, &arn).unwrap(),
            json!({"Sid": "s1", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                   "Action": "lambda:InvokeFunction", "Resource": arn,
                   "Condition": {"StringEquals": {"AWS:SourceAccount": "123456789012"},
                                 "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}}})
        );
        assert_eq!(
            statement(&new("123456789012"), &arn).unwrap()["Principal"],
            json!({"AWS": "arn:aws:iam::123456789012:root"})
        );
        assert_eq!(
            statement(&new("AKIDEXAMPLE1"), &arn).unwrap()["Principal"],
            json!({"AWS": "arn:aws:iam::000000000000:user/AKIDEXAMPLE1"})
        );
        assert_eq!(statement(&new("*"), &arn).unwrap()["Principal"], json!("*"));
        let mut bad = new("*");
        bad.action = "s3:GetObject".into();
        assert!(statement(&bad, &arn).is_err());
        let mut bad = new("*");
        bad.statement_id = "no spaces".into();
        assert!(statement(&bad, &arn).is_err());
        let mut bad = new("*");
        bad.function_url_auth_type = Some("OPEN".into());
        assert!(statement(&bad, &arn).is_err());
        assert!(statement(&new("two words"), &arn).is_err());
    }
}
