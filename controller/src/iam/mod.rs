//! IAM policy documents and their evaluation (issue 17): identity policies attached to access
//! keys, resource-based policies on functions, and the one decision every API route asks for.
//!
//! - `policy.rs`: the document grammar (IAM's JSON), validated and compiled at parse time
//!   (lower-cased action patterns, split wildcards, parsed CIDRs, dates and numbers), so that
//!   evaluating a request does no parsing and no allocation.
//! - `condition.rs`: the `Condition` operators.
//! - `pattern.rs`: `*` / `?` wildcards (actions case-insensitive, resources case-sensitive).
//! - `arn` (below): the ARNs of Lamina's resources, as AWS spells them.
//!
//! Evaluation is IAM's in one account: an explicit `Deny` in any applicable policy wins; else the
//! request is allowed if an identity policy or the resource policy allows it (a resource policy's
//! statement applies only when its `Principal` names the caller); else it is denied by default.
//! Admin principals are always allowed.
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

mod condition;
mod pattern;
mod policy;
#[cfg(test)]
mod tests;

pub use policy::{Policy, PolicyError, MAX_IDENTITY_POLICY_CHARS, MAX_POLICY_CHARS};

/// The one account of a Lamina cluster (as `rest/lambda/shapes.rs`).
pub const ACCOUNT_ID: &str = "000000000000";
/// The region in Lamina's ARNs.
pub const REGION: &str = "us-east-1";

/// Who is calling: an access key, whether it is an admin key, and its identity policies.
#[derive(Clone, Debug, Default)]
pub struct Principal {
    pub access_key_id: String,
    pub admin: bool,
    pub policies: Vec<Arc<Policy>>,
}

impl Principal {
    /// `arn:aws:iam::000000000000:user/<ACCESS_KEY_ID>`: each access key is its own IAM user.
    pub fn arn(&self) -> String {
        arn::access_key(&self.access_key_id)
    }
}

/// What a request brings to conditions besides the action and resource.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// `aws:SourceIp`.
    pub source_ip: Option<IpAddr>,
    /// `aws:CurrentTime` / `aws:EpochTime`.
    pub now: SystemTime,
    /// `aws:SecureTransport`.
    pub secure_transport: bool,
    /// Service keys, e.g. `("lambda:FunctionUrlAuthType", "AWS_IAM")`.
    pub extra: Vec<(String, String)>,
}

impl Default for RequestContext {
    fn default() -> RequestContext {
        RequestContext {
            source_ip: None,
            now: SystemTime::now(),
            secure_transport: false,
            extra: Vec::new(),
        }
    }
}

/// Why a request was refused, as AWS words it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("access key {access_key_id} ({arn}) is not authorized to perform {action} on resource {resource}: {}", if *.explicit { "an explicit deny in a policy" } else { "no policy allows it" })]
pub struct Denied {
    pub access_key_id: String,
    pub arn: String,
    pub action: String,
    pub resource: String,
    /// An explicit `Deny` matched (else no statement allowed the request).
    pub explicit: bool,
}

/// The decision: explicit deny wins, then an allow from an identity policy or from the resource
/// policy (whose statements apply when their `Principal` names the caller), else deny.
pub fn authorize(
    p: &Principal,
    action: &str,
    resource_arn: &str,
    ctx: &RequestContext,
    resource_policy: Option<&Policy>,
) -> Result<(), Denied> {
    if p.admin {
        return Ok(());
    }
    let req = policy::Request::new(p, action, resource_arn, ctx);
    let mut allowed = false;
    for pol in &p.policies {
        match pol.evaluate(&req) {
            policy::Outcome::Deny => return Err(denied(p, action, resource_arn, true)),
            policy::Outcome::Allow => allowed = true,
            policy::Outcome::NotApplicable => {}
        }
    }
    if let Some(pol) = resource_policy {
        match pol.evaluate(&req) {
            policy::Outcome::Deny => return Err(denied(p, action, resource_arn, true)),
            policy::Outcome::Allow => allowed = true,
            policy::Outcome::NotApplicable => {}
        }
    }
    if allowed {
        Ok(())
    } else {
        Err(denied(p, action, resource_arn, false))
    }
}

fn denied(p: &Principal, action: &str, resource: &str, explicit: bool) -> Denied {
    Denied {
        access_key_id: p.access_key_id.clone(),
        arn: p.arn(),
        action: action.to_string(),
        resource: resource.to_string(),
        explicit,
    }
}

/// The ARNs of Lamina's resources.
pub mod arn {
    use super::{ACCOUNT_ID, REGION};

    /// `arn:aws:lambda:us-east-1:000000000000:function:NAME[:QUALIFIER]`. A `name` that is
    /// already a function ARN or `NAME:QUALIFIER` is taken apart first (an explicit qualifier wins).
    pub fn function(name: &str, qualifier: Option<&str>) -> String {
        let (name, own) = match parse_function(name) {
            Some((n, q)) => (n, q),
            None => match name.split_once(':') {
                Some((n, q)) if !n.is_empty() && !q.contains(':') => (n, Some(q)),
                _ => (name, None),
            },
        };
        let qualifier = match qualifier {
            Some(q) if !q.is_empty() => Some(q),
            _ => own,
        };
        match qualifier {
            Some(q) if !q.is_empty() => {
                format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}:{q}")
            }
            _ => format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"),
        }
    }

    /// `arn:aws:lambda:us-east-1:000000000000:layer:NAME[:VERSION]` (a `name` that is already
    /// a layer ARN is kept, with `version` appended to an unversioned one).
    pub fn layer(name: &str, version: Option<u64>) -> String {
        if name.starts_with("arn:") {
            return match version {
                Some(v) if v > 0 && name.matches(':').count() == 6 => format!("{name}:{v}"),
                _ => name.to_string(),
            };
        }
        match version {
            Some(v) => format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}:{v}"),
            None => format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}"),
        }
    }

    /// `arn:aws:iam::000000000000:user/ID`: an access key is its own IAM user.
    pub fn access_key(id: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT_ID}:user/{id}")
    }

    /// `arn:aws:secretsmanager:us-east-1:000000000000:secret:NAME-SUFFIX`.
    pub fn secret(name_with_suffix: &str) -> String {
        format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{name_with_suffix}")
    }

    /// `arn:aws:ssm:us-east-1:000000000000:parameter/NAME` (a leading `/` of NAME is not doubled).
    pub fn parameter(name: &str) -> String {
        let name = name.strip_prefix('/').unwrap_or(name);
        format!("arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/{name}")
    }

    /// `arn:aws:ec2:us-east-1:000000000000:vpc/ID`.
    pub fn vpc(id: &str) -> String {
        format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:vpc/{id}")
    }

    /// `arn:aws:ec2:us-east-1:000000000000:subnet/ID`.
    pub fn subnet(id: &str) -> String {
        format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:subnet/{id}")
    }

    /// `arn:aws:ec2:us-east-1:000000000000:security-group/ID`.
    pub fn security_group(id: &str) -> String {
        format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:security-group/{id}")
    }

    /// `arn:aws:ec2:us-east-1:000000000000:network-interface/ID` (a netns attachment).
    pub fn network_interface(id: &str) -> String {
        format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:network-interface/{id}")
    }

    /// `arn:aws:apigateway:us-east-1::/apis/ID` (API Gateway's ARNs have no account).
    pub fn http_api(id: &str) -> String {
        format!("arn:aws:apigateway:{REGION}::/apis/{id}")
    }

    /// `arn:aws:apigateway:us-east-1::/apis/ID/routes` (creating and listing routes).
    pub fn http_routes(api_id: &str) -> String {
        format!("{}/routes", http_api(api_id))
    }

    /// `arn:aws:apigateway:us-east-1::/apis/ID/routes/ROUTE` (a route id or key).
    pub fn http_route(api_id: &str, route: &str) -> String {
        format!("{}/routes/{route}", http_api(api_id))
    }

    /// `arn:aws:apigateway:us-east-1::/apis` (creating and listing HTTP APIs).
    pub fn http_apis() -> String {
        format!("arn:aws:apigateway:{REGION}::/apis")
    }

    /// `arn:aws:lambda:us-east-1:000000000000:event-source-mapping:UUID`.
    pub fn event_source_mapping(id: &str) -> String {
        format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:event-source-mapping:{id}")
    }

    /// `arn:aws:lamina:us-east-1:000000000000:worker/ID`.
    pub fn worker(id: &str) -> String {
        format!("arn:aws:lamina:{REGION}:{ACCOUNT_ID}:worker/{id}")
    }

    /// The function ARN's name and qualifier, if `arn` is a function's ARN.
    pub fn parse_function(arn: &str) -> Option<(&str, Option<&str>)> {
        let rest = arn.strip_prefix("arn:aws:lambda:")?;
        let mut parts = rest.splitn(5, ':');
        let (_region, _account, kind) = (parts.next()?, parts.next()?, parts.next()?);
        if kind != "function" {
            return None;
        }
        let name = parts.next()?;
        Some((name, parts.next()))
    }
}
