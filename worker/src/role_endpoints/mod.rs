//! The execution role's endpoints inside a sandbox (issue 17), served by the worker on listening
//! sockets the sandbox's init bound in the sandbox's own network namespace (as the Runtime API's,
//! `sandbox/init.rs`), for functions whose controller-minted session credentials came with the
//! invocation or provisioned target:
//!
//! - `127.0.0.1:9002` (`AWS_ENDPOINT_URL`, [`forward`]): forwards AWS API requests unchanged —
//!   method, path, query, headers (the SigV4 `Authorization` and `Host` included), body — to the
//!   controller's REST API, so the function's SDK signs with its session credentials and the
//!   controller verifies them and applies the role's policy. Only requests signed with this
//!   sandbox's own session key are forwarded. The sandbox itself still has no route to the
//!   controller.
//! - `127.0.0.1:2773` ([`extension`]): the AWS Parameters and Secrets Lambda Extension's local
//!   HTTP interface (`/secretsmanager/get`, `/systemsmanager/parameters/get`, header
//!   `X-Aws-Parameters-Secrets-Token` = the sandbox's `AWS_SESSION_TOKEN`), with its cache; the
//!   worker signs the upstream call with the sandbox's session credentials ([`sign`]).
//!
//! What a sandbox can make the worker spend is bounded: [`MAX_CONNECTIONS`] connections per
//! endpoint, [`MAX_HEADER_BYTES`] of headers within [`HEADER_TIMEOUT`], [`MAX_BODY_BYTES`] of body
//! within [`BODY_TIMEOUT`], the extension's cache within its configured size. How the worker
//! reaches the controller is an [`Upstream`] (plain HTTP today; a TLS connector plugs in there).
//! Credentials never appear in logs: [`SandboxCredentials`]' `Debug` redacts them.
pub mod extension;
pub mod forward;
mod serve;
pub mod sign;
mod upstream;

use std::fmt;
use std::time::Duration;

use lamina_proto::v1::SessionCredentials;

pub use serve::{serve, RoleEndpoints};
pub use upstream::{upstream_for, PlainHttp, TlsHttp, Upstream, UpstreamError, UpstreamFuture};

/// Connections served at once per endpoint and sandbox; more are closed.
pub const MAX_CONNECTIONS: usize = 8;
/// A request head's bytes at most.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// A request's head must arrive within this once it started.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// A forwarded request's body at most (a 6 MB invocation payload and its JSON headroom).
pub const MAX_BODY_BYTES: usize = 8 << 20;
/// A request body must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// An upstream call (the controller's answer) must complete within this; an invocation through
/// the endpoint may take up to Lambda's 900 s.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(905);
/// The endpoint the sandbox's SDK is pointed at (`AWS_ENDPOINT_URL`).
pub const ENDPOINT_URL: &str = "http://127.0.0.1:9002";

/// A sandbox's session credentials (from the controller, for its function's execution role).
#[derive(Clone, PartialEq, Eq)]
pub struct SandboxCredentials {
    pub access_key_id: String,
    secret_access_key: String,
    session_token: String,
    /// When the controller stops accepting them (epoch ms).
    pub expires_ms: u64,
}

impl fmt::Debug for SandboxCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

impl From<SessionCredentials> for SandboxCredentials {
    fn from(c: SessionCredentials) -> SandboxCredentials {
        SandboxCredentials {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            expires_ms: c.expires_ms,
        }
    }
}

impl SandboxCredentials {
    /// Whether they are complete enough to give a sandbox.
    pub fn is_usable(&self) -> bool {
        !self.access_key_id.is_empty()
            && !self.secret_access_key.is_empty()
            && !self.session_token.is_empty()
    }

    pub fn session_token(&self) -> &str {
        &self.session_token
    }

    pub(crate) fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// Whether they stay valid for `needed` from `now_ms` on: a warm sandbox whose credentials
    /// would expire during its next invocation is not reused (a new one gets fresh ones).
    pub fn valid_for(&self, now_ms: u64, needed: Duration) -> bool {
        self.expires_ms > now_ms.saturating_add(needed.as_millis() as u64)
    }

    /// The variables Lambda sets for the execution role, and the endpoint of this module.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.secret_access_key.clone(),
            ),
            ("AWS_SESSION_TOKEN".into(), self.session_token.clone()),
            ("AWS_ENDPOINT_URL".into(), ENDPOINT_URL.into()),
        ]
    }
}

/// How long a warm sandbox's credentials must still be valid for it to take an invocation: the
/// function's timeout plus a minute of headroom (the controller hands out sessions with more
/// than half of their lifetime left, an hour by default).
pub fn reuse_margin(timeout_s: u32) -> Duration {
    Duration::from_secs(u64::from(timeout_s) + 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> SandboxCredentials {
        SessionCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret-xyz".into(),
            session_token: "token-xyz".into(),
            expires_ms: 100_000,
        }
        .into()
    }

    #[test]
    fn credentials_are_never_printed_and_expire_with_a_margin() {
        let c = creds();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("secret-xyz") && !shown.contains("token-xyz"),
            "{shown}"
        );
        assert!(c.valid_for(0, Duration::from_secs(99)));
        assert!(!c.valid_for(0, Duration::from_secs(100)));
        assert!(!c.valid_for(100_000, Duration::ZERO));
        let env = c.env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_SESSION_TOKEN"), Some("token-xyz"));
        assert_eq!(get("AWS_ENDPOINT_URL"), Some(ENDPOINT_URL));
    }
}
