//! Execution roles in memory and the short-lived credentials of their sessions (issue 17).
//!
//! A function whose `Role` is `arn:aws:iam::000000000000:role/NAME` for an existing role NAME gets
//! session credentials in its sandboxes: an access key id `ASIA…`, a secret and a session token,
//! all random, known only to this process (never stored, never logged: a restarted controller
//! forgets them and mints new ones, and the sandboxes holding old ones are retired by the
//! worker as their expiry nears). A request signed with them is accepted by the REST front only
//! with the matching `X-Amz-Security-Token` and before the expiry; its principal has exactly the
//! role's policy — the role's current one: updating a role changes what its live sessions may
//! do, deleting it ends them.
//!
//! One session per function revision at a time: [`SessionStore::credentials_for`] hands out the
//! current one while more than half of its lifetime is left, else mints the next. The worker
//! puts them in the environment of the sandboxes it starts, and does not reuse a warm sandbox
//! whose credentials expire within its margin (`worker/src/manager/credentials.rs`), so a
//! sandbox never runs with credentials that expire during an invocation.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use lamina_proto::auth::{constant_time_eq, now_ms, random_secret, AuthFailure};
use lamina_proto::domain::FunctionConfig;
use lamina_proto::session::SESSION_KEY_PREFIX;
use lamina_proto::v1;

use crate::iam::{Policy, Principal, ACCOUNT_ID};

/// The default lifetime of session credentials (`--session-ttl-secs`), as Lambda's.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(3600);
/// Expired sessions are remembered this long (so that their use is refused as expired, not as
/// unknown), then forgotten.
const EXPIRED_KEPT: Duration = Duration::from_secs(3600);

/// The role name a function's `Role` ARN names, if it names one of this account's roles
/// (`arn:aws:iam::000000000000:role/NAME`, no path).
pub fn role_name(role_arn: &str) -> Option<&str> {
    let name = role_arn
        .strip_prefix("arn:aws:iam::")?
        .strip_prefix(ACCOUNT_ID)?
        .strip_prefix(":role/")?;
    valid_role_name(name).then_some(name)
}

/// `arn:aws:iam::000000000000:role/NAME`.
pub fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
}

/// IAM's role names: 1 to 64 of letters, digits and `+=,.@_-`.
pub fn valid_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

struct Session {
    secret: String,
    token: String,
    role: String,
    expires_ms: u64,
}

/// Roles (compiled) and their live sessions.
pub struct SessionStore {
    ttl: Duration,
    roles: RwLock<HashMap<String, Arc<Policy>>>,
    sessions: RwLock<HashMap<String, Session>>,
    /// The session handed out for each (function, revision), by access key id.
    current: Mutex<HashMap<(String, String), String>>,
}

impl SessionStore {
    /// Sessions lasting `ttl` (at least 1 s).
    pub fn new(ttl: Duration) -> SessionStore {
        SessionStore {
            ttl: ttl.max(Duration::from_secs(1)),
            roles: RwLock::default(),
            sessions: RwLock::default(),
            current: Mutex::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Sets (`Some`) or removes (`None`) the policy of role `name`. Removing it ends its sessions.
    pub fn set_role(&self, name: &str, policy: Option<Arc<Policy>>) {
        let mut roles = self.roles.write().unwrap_or_else(|p| p.into_inner());
        match policy {
            Some(p) => {
                roles.insert(name.to_string(), p);
            }
            None => {
                roles.remove(name);
                drop(roles);
                let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
                sessions.retain(|_, s| s.role != name);
            }
        }
    }

    fn role_policy(&self, name: &str) -> Option<Arc<Policy>> {
        let roles = self.roles.read().unwrap_or_else(|p| p.into_inner());
        roles.get(name).cloned()
    }

    /// The credentials for a sandbox of `config` (its revision's current session, or a new one),
    /// or `None` when its role is not one of this cluster's roles.
    pub fn credentials_for(&self, config: &FunctionConfig) -> Option<v1::SessionCredentials> {
        let role = role_name(&config.spec.role)?;
        self.role_policy(role)?;
        let now = now_ms();
        let half = self.ttl.as_millis() as u64 / 2;
        let key = (config.spec.name.clone(), config.revision_id.clone());
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = current.get(&key) {
            let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = sessions.get(id) {
                if s.role == role && s.expires_ms > now + half {
                    return Some(v1::SessionCredentials {
                        access_key_id: id.clone(),
                        secret_access_key: s.secret.clone(),
                        session_token: s.token.clone(),
                        expires_ms: s.expires_ms,
                    });
                }
            }
        }
        let creds = v1::SessionCredentials {
            access_key_id: format!("{SESSION_KEY_PREFIX}{}", random_secret(16).to_uppercase()),
            secret_access_key: random_secret(40),
            session_token: random_secret(96),
            expires_ms: now + self.ttl.as_millis() as u64,
        };
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let forget_before = now.saturating_sub(EXPIRED_KEPT.as_millis() as u64);
        sessions.retain(|_, s| s.expires_ms > forget_before);
        current.retain(|_, id| sessions.contains_key(id));
        sessions.insert(
            creds.access_key_id.clone(),
            Session {
                secret: creds.secret_access_key.clone(),
                token: creds.session_token.clone(),
                role: role.to_string(),
                expires_ms: creds.expires_ms,
            },
        );
        current.insert(key, creds.access_key_id.clone());
        tracing::info!(function = %config.spec.name, role, access_key_id = %creds.access_key_id, "minted role session credentials");
        Some(creds)
    }

    /// Whether `key_id` is a session key (it may be unknown or expired).
    pub fn is_session_key(key_id: &str) -> bool {
        key_id.starts_with(SESSION_KEY_PREFIX)
    }

    /// The secret of session `key_id` when `token` is its session token, it has not expired at
    /// `now_ms` and its role still exists.
    pub fn secret(
        &self,
        key_id: &str,
        token: Option<&[u8]>,
        now_ms: u64,
    ) -> Result<String, AuthFailure> {
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        let Some(s) = sessions.get(key_id) else {
            return Err(AuthFailure::UnknownKey(key_id.to_string()));
        };
        let Some(token) = token else {
            return Err(AuthFailure::Denied(
                key_id.to_string(),
                "session credentials need their session token (X-Amz-Security-Token)".into(),
            ));
        };
        if !constant_time_eq(token, s.token.as_bytes()) {
            return Err(AuthFailure::Denied(
                key_id.to_string(),
                "the security token included in the request is invalid".into(),
            ));
        }
        if now_ms >= s.expires_ms {
            return Err(AuthFailure::ExpiredToken(key_id.to_string()));
        }
        if self.role_policy(&s.role).is_none() {
            return Err(AuthFailure::Denied(
                key_id.to_string(),
                format!("role `{}` of this session was deleted", s.role),
            ));
        }
        Ok(s.secret.clone())
    }

    /// The principal of a live session: its role's current policy, never admin. `None` for an
    /// unknown or expired session, or one whose role was deleted.
    pub fn principal(&self, key_id: &str) -> Option<Principal> {
        let (role, expires_ms) = {
            let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
            let s = sessions.get(key_id)?;
            (s.role.clone(), s.expires_ms)
        };
        if now_ms() >= expires_ms {
            return None;
        }
        Some(Principal {
            access_key_id: key_id.to_string(),
            admin: false,
            policies: vec![self.role_policy(&role)?],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::function;

    const READ_ONE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;

    fn store_with_role(ttl: Duration) -> SessionStore {
        let s = SessionStore::new(ttl);
        s.set_role(
            "reader",
            Some(Arc::new(Policy::parse_identity(READ_ONE).unwrap())),
        );
        s
    }

    #[test]
    fn role_arns_of_this_account_name_roles() {
        assert_eq!(
            role_name("arn:aws:iam::000000000000:role/reader"),
            Some("reader")
        );
        for not in [
            "",
            "arn:aws:iam::123456789012:role/reader",
            "arn:aws:iam::000000000000:role/path/reader",
            "arn:aws:iam::000000000000:user/reader",
        ] {
            assert_eq!(role_name(not), None, "{not}");
        }
        assert_eq!(role_arn("r"), "arn:aws:iam::000000000000:role/r");
    }

    #[test]
    fn a_function_with_a_role_gets_credentials_that_verify_only_with_their_token() {
        let store = store_with_role(Duration::from_secs(60));
        let mut f = function("f");
        assert!(store.credentials_for(&f).is_none(), "no role: none");
        f.spec.role = role_arn("missing");
        assert!(store.credentials_for(&f).is_none(), "unknown role: none");
        f.spec.role = role_arn("reader");
        let c = store.credentials_for(&f).unwrap();
        assert!(c.access_key_id.starts_with("ASIA") && c.access_key_id.len() == 20);
        // The same revision gets the same session while more than half of it is left.
        assert_eq!(
            store.credentials_for(&f).unwrap().access_key_id,
            c.access_key_id
        );
        // Another function gets its own.
        let mut g = function("g");
        g.spec.role = role_arn("reader");
        assert_ne!(
            store.credentials_for(&g).unwrap().access_key_id,
            c.access_key_id
        );

        let now = now_ms();
        let token = c.session_token.as_bytes();
        assert_eq!(
            store.secret(&c.access_key_id, Some(token), now).unwrap(),
            c.secret_access_key
        );
        assert!(matches!(
            store.secret(&c.access_key_id, None, now),
            Err(AuthFailure::Denied(..))
        ));
        assert!(matches!(
            store.secret(&c.access_key_id, Some(b"forged"), now),
            Err(AuthFailure::Denied(..))
        ));
        assert!(matches!(
            store.secret(&c.access_key_id, Some(token), c.expires_ms),
            Err(AuthFailure::ExpiredToken(_))
        ));
        assert!(matches!(
            store.secret("ASIANOPE", Some(token), now),
            Err(AuthFailure::UnknownKey(_))
        ));

        let p = store.principal(&c.access_key_id).unwrap();
        assert!(!p.admin);
        assert_eq!(p.policies.len(), 1);
        assert_eq!(p.policies[0].text(), READ_ONE);

        // Deleting the role ends its sessions.
        store.set_role("reader", None);
        assert!(store.principal(&c.access_key_id).is_none());
        assert!(store.secret(&c.access_key_id, Some(token), now).is_err());
        assert!(store.credentials_for(&f).is_none());
    }

    #[test]
    fn a_session_past_half_its_life_is_replaced_for_new_sandboxes() {
        let store = store_with_role(Duration::from_secs(1));
        let mut f = function("f");
        f.spec.role = role_arn("reader");
        let first = store.credentials_for(&f).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        let second = store.credentials_for(&f).unwrap();
        assert_ne!(first.access_key_id, second.access_key_id);
        // The first still verifies until it expires.
        let now = now_ms();
        assert!(store
            .secret(
                &first.access_key_id,
                Some(first.session_token.as_bytes()),
                now
            )
            .is_ok());
    }
}
