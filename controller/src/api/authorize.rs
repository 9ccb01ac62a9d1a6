//! The one authorisation helper every API route calls (gRPC services, the REST front's
//! services, the HTTP gateway's `AWS_IAM` function URLs): who is calling (the
//! [`Caller`] the signature check put in the request's extensions), what its key's identity
//! policies and, for `lambda:` actions on a function, the function's resource policy say
//! (`crate::iam`). Without a key store (authentication off) everything is allowed.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use lamina_proto::auth::Caller;

use super::{ApiError, Shared};
use crate::iam::{self, Policy, Principal, RequestContext};

impl Shared {
    /// Whether the caller in `extensions` may perform `action` (AWS's name, e.g.
    /// `lambda:InvokeFunction`) on `resource_arn` (`*` for list calls). A refusal is
    /// [`ApiError::PermissionDenied`]: gRPC `PERMISSION_DENIED`, REST 403 `AccessDeniedException`.
    pub fn authorize(
        &self,
        extensions: &http::Extensions,
        action: &str,
        resource_arn: &str,
    ) -> Result<(), ApiError> {
        self.authorize_with(extensions, action, resource_arn, Vec::new())
    }

    /// [`Shared::authorize`] on the function `name` (a name, `NAME:QUALIFIER` or an ARN) and
    /// `qualifier` (empty: the unqualified function).
    pub fn authorize_function(
        &self,
        extensions: &http::Extensions,
        action: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<(), ApiError> {
        self.authorize(
            extensions,
            action,
            &iam::arn::function(name, Some(qualifier)),
        )
    }

    /// [`Shared::authorize`] with service-specific condition keys (e.g.
    /// `("lambda:FunctionUrlAuthType", "AWS_IAM")`).
    pub fn authorize_with(
        &self,
        extensions: &http::Extensions,
        action: &str,
        resource_arn: &str,
        extra: Vec<(String, String)>,
    ) -> Result<(), ApiError> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let Some(caller) = extensions.get::<Caller>() else {
            // Every authenticated transport puts the caller in; a route reached without one
            // was not signed and is refused.
            return Err(ApiError::PermissionDenied(format!(
                "no signed caller for {action} on resource {resource_arn}: sign the request with an access key"
            )));
        };
        let principal = self.principal(keys, &caller.access_key_id);
        if principal.admin {
            return Ok(());
        }
        let ctx = RequestContext {
            source_ip: source_ip(extensions),
            now: SystemTime::now(),
            secure_transport: secure(extensions),
            extra,
        };
        let resource_policy = if action.starts_with("lambda:") {
            self.function_policy(resource_arn)?
        } else {
            None
        };
        iam::authorize(
            &principal,
            action,
            resource_arn,
            &ctx,
            resource_policy.as_deref(),
        )
        .map_err(|d| ApiError::PermissionDenied(d.to_string()))
    }

    /// The principal of an access key: an execution role's session (its role's policy), a key
    /// of the store (admin, or its policy), or, for one unknown or revoked since it signed, a
    /// principal without policies (allowed only what resource policies grant it).
    /// Whether the caller in `extensions` is an admin key (always true when authentication is
    /// off: everyone is).
    pub(crate) fn caller_is_admin(&self, extensions: &http::Extensions) -> bool {
        let Some(keys) = &self.keys else {
            return true;
        };
        extensions
            .get::<Caller>()
            .is_some_and(|c| self.principal(keys, &c.access_key_id).admin)
    }

    fn principal(&self, keys: &crate::auth::KeyStore, access_key_id: &str) -> Principal {
        let found = if crate::auth::sessions::SessionStore::is_session_key(access_key_id) {
            self.sessions.principal(access_key_id)
        } else {
            keys.principal(access_key_id)
        };
        found.unwrap_or_else(|| Principal {
            access_key_id: access_key_id.to_string(),
            admin: false,
            policies: Vec::new(),
        })
    }

    /// The resource policy of the function (and qualifier) `arn` names, if it has one.
    fn function_policy(&self, arn: &str) -> Result<Option<Arc<Policy>>, ApiError> {
        let Some((name, qualifier)) = iam::arn::parse_function(arn) else {
            return Ok(None);
        };
        if name.contains('*') || name.contains('?') {
            return Ok(None);
        }
        let Some(stored) = self
            .store
            .get_function_policy(name, qualifier.unwrap_or(""))?
        else {
            return Ok(None);
        };
        // Every write gives a policy a new revision id: a compiled policy is found by it, so
        // a request parses a resource policy only once per change.
        let mut cache = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&stored.revision_id) {
            return Ok(Some(Arc::clone(p)));
        }
        match Policy::parse(&stored.policy) {
            Ok(p) => {
                if cache.len() >= COMPILED_MAX {
                    cache.clear();
                }
                let p = Arc::new(p);
                cache.insert(stored.revision_id, Arc::clone(&p));
                Ok(Some(p))
            }
            Err(e) => {
                tracing::error!(function = %name, error = %e, "stored resource policy does not parse: ignored");
                Ok(None)
            }
        }
    }
}

/// Compiled resource policies by revision id (bounded: cleared when full).
static COMPILED: LazyLock<Mutex<HashMap<String, Arc<Policy>>>> = LazyLock::new(Mutex::default);
const COMPILED_MAX: usize = 4096;

/// Put in a request's extensions by the HTTP listeners when it came over TLS
/// (`aws:SecureTransport`); gRPC requests over TLS carry tonic's `TlsConnectInfo`.
pub use crate::http_listener::SecureTransport;

type TlsInfo = tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>;

/// Whether the request came over TLS.
fn secure(extensions: &http::Extensions) -> bool {
    extensions.get::<SecureTransport>().is_some() || extensions.get::<TlsInfo>().is_some()
}

/// The client's address: the HTTP listeners' [`crate::http_listener::Peer`], or tonic's
/// connection info (plain or under TLS).
fn source_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    if let Some(p) = extensions.get::<crate::http_listener::Peer>() {
        return Some(p.0.ip());
    }
    let tcp = extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .or_else(|| extensions.get::<TlsInfo>().map(|t| t.get_ref()));
    tcp.and_then(|c| c.remote_addr()).map(|a| a.ip())
}
