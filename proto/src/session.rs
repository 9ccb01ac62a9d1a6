//! Short-lived credentials of execution roles, as they travel from the controller to a worker
//! (`v1::SessionCredentials`): never printed. The generated message has no derived `Debug`
//! (`build.rs`); this one names the access key id and the expiry only.
use std::fmt;

use crate::v1::SessionCredentials;

/// The access key id prefix of role session credentials (as AWS STS's temporary keys).
pub const SESSION_KEY_PREFIX: &str = "ASIA";

impl fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_has_no_secret() {
        let c = SessionCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "s3cr3t-value".into(),
            session_token: "t0ken-value".into(),
            expires_ms: 5,
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("ASIAEXAMPLE"), "{shown}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0ken"),
            "{shown}"
        );
    }
}
