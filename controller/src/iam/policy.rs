//! The policy document: IAM's JSON grammar, validated (errors name the statement and the field)
//! and compiled for cheap evaluation.
use serde_json::{Map, Value};

use super::condition::{Condition, Op};
use super::pattern::Pattern;
use super::{Principal, RequestContext, ACCOUNT_ID};

/// The largest document, in characters: Lambda's bound on a function's resource policy (20 KB).
/// Identity policies ([`Policy::parse_identity`]) keep IAM's bound on inline user policies:
/// [`MAX_IDENTITY_POLICY_CHARS`] characters other than white space.
pub const MAX_POLICY_CHARS: usize = 20 * 1024;
/// IAM's bound on an inline user policy, not counting white space.
pub const MAX_IDENTITY_POLICY_CHARS: usize = 6144;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the policy has {chars} characters, more than the {max} allowed: split it")]
    TooLarge { chars: usize, max: usize },
    #[error("the policy is not valid JSON: {0}")]
    Json(String),
    #[error("{at}: `{field}` {detail}")]
    Invalid {
        /// `policy`, or `Statement[N]` / `Statement[N] (Sid "x")` (N counts from 0).
        at: String,
        field: String,
        detail: String,
    },
    #[error("{at}: an identity policy names no `Principal`/`NotPrincipal` (the caller is the principal): remove it")]
    PrincipalInIdentityPolicy { at: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// `Action`/`NotAction`, `Resource`/`NotResource`: patterns and whether the element is negated.
#[derive(Clone, Debug)]
struct Matcher {
    not: bool,
    patterns: Vec<Pattern>,
}

impl Matcher {
    fn matches(&self, s: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(s)) != self.not
    }
}

/// `Principal`/`NotPrincipal`.
#[derive(Clone, Debug)]
struct PrincipalMatcher {
    not: bool,
    /// `"*"` or `{"AWS": "*"}`.
    anyone: bool,
    /// `AWS` values: ARNs, access key ids or the account (id or root ARN).
    aws: Vec<String>,
}

impl PrincipalMatcher {
    fn matches(&self, req: &Request<'_>) -> bool {
        let named = self.anyone
            || self.aws.iter().any(|a| {
                a == ACCOUNT_ID
                    || *a == req.principal_arn
                    || *a == req.principal.access_key_id
                    || a.strip_prefix("arn:aws:iam::")
                        .and_then(|r| r.strip_suffix(":root"))
                        == Some(ACCOUNT_ID)
            });
        named != self.not
    }
}

#[derive(Clone, Debug)]
struct Statement {
    effect: Effect,
    action: Matcher,
    resource: Matcher,
    principal: Option<PrincipalMatcher>,
    conditions: Vec<Condition>,
}

impl Statement {
    fn applies(&self, req: &Request<'_>) -> bool {
        self.action.matches(&req.action)
            && self.resource.matches(req.resource)
            && self.principal.as_ref().is_none_or(|p| p.matches(req))
            && self.conditions.iter().all(|c| c.holds(req))
    }
}

/// A parsed, validated and compiled policy document.
#[derive(Clone, Debug)]
pub struct Policy {
    text: String,
    statements: Vec<Statement>,
    /// Every statement names a principal (a resource-based policy).
    resource_based: bool,
}

/// What a policy says of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Allow,
    Deny,
    NotApplicable,
}

/// One request, prepared once for every policy it is checked against.
pub(super) struct Request<'a> {
    /// Lower-cased: actions match case-insensitively.
    pub action: String,
    pub resource: &'a str,
    pub principal: &'a Principal,
    pub principal_arn: String,
    pub ctx: &'a RequestContext,
}

impl<'a> Request<'a> {
    pub(super) fn new(
        principal: &'a Principal,
        action: &str,
        resource: &'a str,
        ctx: &'a RequestContext,
    ) -> Request<'a> {
        Request {
            action: action.to_ascii_lowercase(),
            resource,
            principal,
            principal_arn: principal.arn(),
            ctx,
        }
    }
}

impl Policy {
    /// Parses any policy document (identity or resource-based) of at most [`MAX_POLICY_CHARS`].
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let chars = text.chars().count();
        if chars > MAX_POLICY_CHARS {
            return Err(PolicyError::TooLarge {
                chars,
                max: MAX_POLICY_CHARS,
            });
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|e| PolicyError::Json(e.to_string()))?;
        let statements = parse_document(&doc)?;
        let resource_based = statements.iter().all(|s| s.principal.is_some());
        Ok(Policy {
            text: text.to_string(),
            statements,
            resource_based,
        })
    }

    /// Parses a policy to attach to an access key: no `Principal`, and IAM's bound of
    /// [`MAX_IDENTITY_POLICY_CHARS`] characters other than white space.
    pub fn parse_identity(text: &str) -> Result<Policy, PolicyError> {
        let chars = text.chars().filter(|c| !c.is_whitespace()).count();
        if chars > MAX_IDENTITY_POLICY_CHARS {
            return Err(PolicyError::TooLarge {
                chars,
                max: MAX_IDENTITY_POLICY_CHARS,
            });
        }
        let policy = Policy::parse(text)?;
        if let Some(i) = policy.statements.iter().position(|s| s.principal.is_some()) {
            let doc: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            return Err(PolicyError::PrincipalInIdentityPolicy {
                at: statement_name(i, statement_value(&doc, i)),
            });
        }
        Ok(policy)
    }

    /// The document as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether every statement names a principal.
    pub fn is_resource_based(&self) -> bool {
        self.resource_based
    }

    /// How many statements the policy has.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// An explicit deny, an allow, or neither. Statements that name a principal apply only to
    /// a request by that principal.
    pub(super) fn evaluate(&self, req: &Request<'_>) -> Outcome {
        let mut out = Outcome::NotApplicable;
        for s in &self.statements {
            if s.applies(req) {
                match s.effect {
                    Effect::Deny => return Outcome::Deny,
                    Effect::Allow => out = Outcome::Allow,
                }
            }
        }
        out
    }
}

fn statement_value(doc: &Value, i: usize) -> Option<&Value> {
    match doc.get("Statement")? {
        Value::Array(a) => a.get(i),
        v => Some(v),
    }
}

fn statement_name(i: usize, s: Option<&Value>) -> String {
    match s.and_then(|s| s.get("Sid")).and_then(Value::as_str) {
        Some(sid) => format!("Statement[{i}] (Sid \"{sid}\")"),
        None => format!("Statement[{i}]"),
    }
}

fn invalid(at: &str, field: &str, detail: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        at: at.to_string(),
        field: field.to_string(),
        detail: detail.into(),
    }
}

fn parse_document(doc: &Value) -> Result<Vec<Statement>, PolicyError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| invalid("policy", "(document)", "must be a JSON object"))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
            return Err(invalid(
                "policy",
                k,
                "is not a policy element (Version, Id, Statement)",
            ));
        }
    }
    match obj.get("Version") {
        Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
        Some(v) => {
            return Err(invalid(
                "policy",
                "Version",
                format!("is {v}: use \"2012-10-17\""),
            ))
        }
        None => {
            return Err(invalid(
                "policy",
                "Version",
                "is missing: add \"Version\": \"2012-10-17\"",
            ))
        }
    }
    if let Some(id) = obj.get("Id") {
        if !id.is_string() {
            return Err(invalid("policy", "Id", "must be a string"));
        }
    }
    let statements: Vec<&Value> = match obj.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().collect(),
        Some(Value::Array(_)) => return Err(invalid("policy", "Statement", "is empty")),
        Some(v @ Value::Object(_)) => vec![v],
        Some(_) => {
            return Err(invalid(
                "policy",
                "Statement",
                "must be an object or an array of objects",
            ))
        }
        None => return Err(invalid("policy", "Statement", "is missing")),
    };
    let mut sids = std::collections::HashSet::new();
    statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = statement_name(i, Some(s));
            if let Some(sid) = s.get("Sid").and_then(Value::as_str) {
                if !sids.insert(sid) {
                    return Err(invalid(
                        &at,
                        "Sid",
                        "is used by another statement: Sids are unique",
                    ));
                }
            }
            parse_statement(&at, s)
        })
        .collect()
}

fn parse_statement(at: &str, s: &Value) -> Result<Statement, PolicyError> {
    let obj = s
        .as_object()
        .ok_or_else(|| invalid(at, "(statement)", "must be a JSON object"))?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "Sid"
                | "Effect"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Principal"
                | "NotPrincipal"
                | "Condition"
        ) {
            return Err(invalid(at, k, "is not a statement element"));
        }
    }
    if let Some(sid) = obj.get("Sid") {
        if !sid.is_string() {
            return Err(invalid(at, "Sid", "must be a string"));
        }
    }
    let effect = match obj.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(e) => {
            return Err(invalid(
                at,
                "Effect",
                format!("is `{e}`: use Allow or Deny"),
            ))
        }
        None => return Err(invalid(at, "Effect", "is missing (Allow or Deny)")),
    };
    let action = one_of(at, obj, "Action", "NotAction", |at, field, v| {
        if v != "*" {
            let (service, name) = v.split_once(':').ok_or_else(|| {
                invalid(at, field, format!("`{v}` is not `service:action` (or `*`)"))
            })?;
            let ok = !service.is_empty()
                && service
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !name.is_empty();
            if !ok {
                return Err(invalid(at, field, format!("`{v}` is not `service:action`")));
            }
        }
        Ok(Pattern::new(&v.to_ascii_lowercase()))
    })?;
    let resource = one_of(at, obj, "Resource", "NotResource", |at, field, v| {
        if v != "*" && !v.starts_with("arn:") {
            return Err(invalid(
                at,
                field,
                format!("`{v}` is not an ARN (arn:aws:...) or `*`"),
            ));
        }
        Ok(Pattern::new(v))
    })?;
    let principal = match (obj.get("Principal"), obj.get("NotPrincipal")) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                at,
                "Principal",
                "and NotPrincipal cannot both be given",
            ))
        }
        (Some(p), None) => Some(parse_principal(at, "Principal", p, false)?),
        (None, Some(p)) => Some(parse_principal(at, "NotPrincipal", p, true)?),
        (None, None) => None,
    };
    let conditions = match obj.get("Condition") {
        Some(c) => parse_conditions(at, c)?,
        None => Vec::new(),
    };
    Ok(Statement {
        effect,
        action,
        resource,
        principal,
        conditions,
    })
}

/// A string or a non-empty array of strings.
fn strings(at: &str, field: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| -> Result<String, PolicyError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(invalid(
                at,
                field,
                "must be a string or an array of strings",
            )),
        }
    };
    match v {
        Value::Array(a) if a.is_empty() => Err(invalid(at, field, "is an empty array")),
        Value::Array(a) => a.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

/// Exactly one of `field` / `not_field`, compiled by `each`.
fn one_of(
    at: &str,
    obj: &Map<String, Value>,
    field: &str,
    not_field: &str,
    each: impl Fn(&str, &str, &str) -> Result<Pattern, PolicyError>,
) -> Result<Matcher, PolicyError> {
    let (name, v, not) = match (obj.get(field), obj.get(not_field)) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                at,
                field,
                format!("and {not_field} cannot both be given"),
            ))
        }
        (Some(v), None) => (field, v, false),
        (None, Some(v)) => (not_field, v, true),
        (None, None) => {
            return Err(invalid(
                at,
                field,
                format!("is missing (give {field} or {not_field})"),
            ))
        }
    };
    let patterns = strings(at, name, v)?
        .iter()
        .map(|s| each(at, name, s))
        .collect::<Result<_, _>>()?;
    Ok(Matcher { not, patterns })
}

fn parse_principal(
    at: &str,
    field: &str,
    v: &Value,
    not: bool,
) -> Result<PrincipalMatcher, PolicyError> {
    let mut m = PrincipalMatcher {
        not,
        anyone: false,
        aws: Vec::new(),
    };
    match v {
        Value::String(s) if s == "*" => m.anyone = true,
        Value::Object(o) if !o.is_empty() => {
            for (kind, values) in o {
                let values = strings(at, field, values)?;
                match kind.as_str() {
                    "AWS" => {
                        for a in values {
                            // An account id (12 digits), an IAM ARN or an access key id
                            // (letters and digits; an account id is such a string too).
                            let arn = a.starts_with("arn:aws:iam::") || a.starts_with("arn:aws:sts::");
                            let id = !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric());
                            if a == "*" {
                                m.anyone = true;
                            } else if arn || id {
                                m.aws.push(a);
                            } else {
                                return Err(invalid(at, field, format!("AWS principal `{a}` is not an account id, an IAM ARN or an access key id")));
                            }
                        }
                    }
                    // Service principals (s3.amazonaws.com, ...) never sign Lamina's requests:
                    // kept in the document, they name no caller.
                    "Service" | "Federated" | "CanonicalUser" => {}
                    other => {
                        return Err(invalid(
                            at,
                            field,
                            format!("principal type `{other}` is not AWS, Service, Federated or CanonicalUser"),
                        ))
                    }
                }
            }
        }
        _ => return Err(invalid(
            at,
            field,
            "must be \"*\" or an object such as {\"AWS\": \"arn:aws:iam::000000000000:user/KEY\"}",
        )),
    }
    Ok(m)
}

fn parse_conditions(at: &str, c: &Value) -> Result<Vec<Condition>, PolicyError> {
    let obj = c
        .as_object()
        .ok_or_else(|| invalid(at, "Condition", "must be an object of operators"))?;
    let mut out = Vec::new();
    for (op_name, keys) in obj {
        let (base, if_exists) = match op_name.strip_suffix("IfExists") {
            Some(b) if b != "Null" => (b, true),
            _ => (op_name.as_str(), false),
        };
        if op_name.starts_with("ForAnyValue:") || op_name.starts_with("ForAllValues:") {
            return Err(invalid(
                at,
                "Condition",
                format!("`{op_name}`: set operators are not supported (Lamina's context keys are single-valued)"),
            ));
        }
        let op = Op::parse(base).ok_or_else(|| {
            invalid(
                at,
                "Condition",
                format!("`{op_name}` is not a condition operator"),
            )
        })?;
        let keys = keys.as_object().ok_or_else(|| {
            invalid(
                at,
                "Condition",
                format!("`{op_name}` must map condition keys to values"),
            )
        })?;
        if keys.is_empty() {
            return Err(invalid(at, "Condition", format!("`{op_name}` has no keys")));
        }
        for (key, values) in keys {
            let values = condition_values(values).ok_or_else(|| {
                invalid(
                    at,
                    "Condition",
                    format!("`{op_name}` key `{key}`: values must be strings, numbers or booleans"),
                )
            })?;
            let cond = Condition::compile(op, if_exists, key, &values)
                .map_err(|e| invalid(at, "Condition", format!("`{op_name}` {e}")))?;
            out.push(cond);
        }
    }
    Ok(out)
}

/// Condition values: a scalar or an array of scalars, as strings.
fn condition_values(v: &Value) -> Option<Vec<String>> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match v {
        Value::Array(a) => a.iter().map(one).collect(),
        v => one(v).map(|s| vec![s]),
    }
}
