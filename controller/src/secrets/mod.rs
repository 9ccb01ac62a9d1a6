//! Secrets Manager and SSM Parameter Store, transport-neutral: what the REST front's
//! `secretsmanager` and `ssm` services call (`crate::rest::{secretsmanager, ssm}`).
//!
//! - `manager.rs`: secrets, their versions and staging labels, deletion with a recovery window
//!   (purged lazily: a secret past its deletion date is deleted by the first call that finds it,
//!   reads and listings included), restore;
//! - `listing.rs`: `ListSecrets` (filters, sorting, pages);
//! - `staging.rs`: the staging-label rules (`AWSCURRENT` moves, the previous current becomes
//!   `AWSPREVIOUS`), pure;
//! - `rotation.rs`: `RotateSecret`, the four steps of a rotation function invoked through the
//!   invocation pipeline (`api::invoke`);
//! - `parameters.rs`: SSM parameters (`String`, `StringList`, `SecureString`), versions, paths.
//!
//! Every secret value and every `SecureString` is sealed with the controller's master key
//! (`crate::crypto`, envelope encryption) before it reaches the store, the additional data
//! binding it to its secret (ARN) or parameter (name) and version: a value copied under another
//! name or version does not open. Values never appear in logs, errors or `Debug` output.
//! Each operation is authorised through `Shared::authorize` with Secrets Manager's and SSM's
//! action names, on the secret's or parameter's ARN.
use std::sync::LazyLock;

use tokio::sync::MutexGuard;
use zeroize::Zeroizing;

use crate::api::{ApiError, Shared};
use crate::store::writers::KeyedLocks;

mod listing;
pub(crate) mod manager;
pub(crate) mod parameters;
pub(crate) mod rotation;
pub(crate) mod staging;

/// Serialises the read-modify-writes of one secret (`s` + name) or parameter (`p` + name).
static WRITES: LazyLock<KeyedLocks> = LazyLock::new(|| KeyedLocks::new(64));

async fn lock(kind: u8, name: &str) -> MutexGuard<'static, ()> {
    let mut key = vec![kind];
    key.extend_from_slice(name.as_bytes());
    WRITES.lock(&key).await
}

/// What went wrong, with Secrets Manager's error codes ([`SecretsError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("Secrets Manager can't find the specified secret: `{0}`")]
    NotFound(String),
    #[error("Secrets Manager can't find the specified secret value for {0}")]
    ValueNotFound(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("you can't perform this operation on secret `{0}` because it was marked for deletion: restore it first (RestoreSecret)")]
    MarkedForDeletion(String),
    #[error("{0}")]
    Exists(String),
    #[error("the value of secret `{0}` does not decrypt under this controller's master key (restore DATA_DIR/auth/master.key from a backup)")]
    Decryption(String),
    #[error("the NextToken is not one this service gave: start the listing again without it")]
    InvalidNextToken,
    #[error(
        "rotation of secret `{secret}` failed at step {step}: {detail}; AWSCURRENT is unchanged"
    )]
    Rotation {
        secret: String,
        step: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl SecretsError {
    /// Secrets Manager's error code (botocore's exception class) and whether it is the
    /// service's fault (500) rather than the client's (400).
    pub fn code(&self) -> (&'static str, bool) {
        match self {
            SecretsError::NotFound(_) | SecretsError::ValueNotFound(_) => {
                ("ResourceNotFoundException", false)
            }
            SecretsError::InvalidParameter(_) => ("InvalidParameterException", false),
            SecretsError::InvalidRequest(_)
            | SecretsError::MarkedForDeletion(_)
            | SecretsError::Rotation { .. } => ("InvalidRequestException", false),
            SecretsError::Exists(_) => ("ResourceExistsException", false),
            SecretsError::Decryption(_) => ("DecryptionFailure", false),
            SecretsError::InvalidNextToken => ("InvalidNextTokenException", false),
            SecretsError::Api(_) => ("InternalServiceError", true),
        }
    }
}

/// A plaintext value (a `SecretString`'s UTF-8 or a `SecretBinary`'s bytes), wiped when
/// dropped and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Plain {
    pub binary: bool,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plain {{ binary: {}, bytes: <{} bytes redacted> }}",
            self.binary,
            self.bytes.len()
        )
    }
}

/// Authorises the caller of the request with these extensions for `action` on `resource`
/// (`Shared::authorize`: the one policy check of every API route).
async fn authorize(
    shared: &Shared,
    extensions: &http::Extensions,
    action: &str,
    resource: &str,
) -> Result<(), ApiError> {
    shared.authorize(extensions, action, resource)
}
