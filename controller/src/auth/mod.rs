//! Access keys and the cluster credential.
//!
//! Files in `DATA_DIR/auth/` (0700), all mode 0600, written atomically (a temp file created 0600,
//! fsync, rename, fsync of the directory):
//! - `master.key`: the key-encryption key of every secret at rest ([`crate::crypto::MasterKey`]).
//! - `access-keys.json`: the keys. A secret is stored **encrypted**, not hashed, because SigV4 and
//!   Lamina's gRPC signatures are HMACs the server must recompute: sealed by
//!   [`MasterKey::seal`](crate::crypto::MasterKey::seal) (envelope encryption, ChaCha20-Poly1305,
//!   the key id as associated data, so a sealed secret moved to another key does not open).
//!   Reading the key file alone (a backup, a copied data directory) gives no secret. Keys stored
//!   by older controllers (a hand-made HMAC keystream) are read by [`legacy`] and rewritten in the
//!   new format on the first start.
//!   Each key may carry an IAM identity policy (`policy`, the document's text), compiled once and
//!   kept beside the key: [`KeyStore::principal`] hands it to `crate::iam` without parsing.
//! - `cluster-token`: the cluster credential (40 random characters) that the controller and its
//!   workers sign their traffic with; workers read it from `--cluster-token-file`.
//! - `admin-credentials.json`: written once, at bootstrap (the first start with no key file), with
//!   the first admin key — the only place that secret is ever shown.
//!
//! Secrets are never logged: [`Credentials`]' `Debug` redacts them.
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lamina_proto::auth::{
    now_ms, random_secret, AuthFailure, Credentials, KeyLookup, CLUSTER_KEY_ID,
};
use lamina_proto::v1;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{MasterKey, Sealed};
use crate::iam::{Policy, PolicyError, Principal};

pub mod sessions;
pub mod sigv4;

mod legacy;

const KEYS_FILE: &str = "access-keys.json";
/// The master key's file name in the auth directory.
pub const MASTER_FILE: &str = "master.key";
const CLUSTER_TOKEN_FILE: &str = "cluster-token";
const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials.json";
/// gRPC methods only admin keys may call, whatever a policy says: plugging host network
/// namespaces into VPCs (key management and roles are authorised by policy, `api/auth.rs`).
const ADMIN_METHODS: &[&str] = &[
    "/lamina.v1.Network/AttachNetns",
    "/lamina.v1.Network/DetachNetns",
];
/// The policy a non-admin key stored before key policies existed gets when it is migrated: what
/// such a key could do then (everything but the admin-only calls), so no user loses a right.
pub const LEGACY_USER_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["lambda:*","ec2:*","apigateway:*"],"Resource":"*"}]}"#;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {detail}; restore it from a backup or remove the auth directory to bootstrap new keys")]
    Corrupt { path: PathBuf, detail: String },
    #[error("access key `{0}` not found: `fnctl auth list` shows the keys")]
    KeyNotFound(String),
    #[error("access key `{0}` is the last admin key that is not revoked: create another admin key first")]
    LastAdmin(String),
    #[error("the policy is not valid: {0}")]
    Policy(#[from] PolicyError),
}

/// A key as `access-keys.json` holds it.
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    access_key_id: String,
    description: String,
    admin: bool,
    created_ms: u64,
    revoked: bool,
    /// The key's IAM identity policy (the document as given); none: only what resource
    /// policies grant (admin keys need none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    /// The secret, sealed under the master key with the key id as associated data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<Sealed>,
    // The old format's sealed secret ([`legacy`]): read, never written.
    #[serde(default, skip_serializing)]
    nonce: Option<String>,
    #[serde(default, skip_serializing)]
    secret_ciphertext: Option<String>,
    #[serde(default, skip_serializing)]
    tag: Option<String>,
}

impl StoredKey {
    fn is_legacy(&self) -> bool {
        self.secret.is_none()
    }
}

struct Key {
    stored: StoredKey,
    secret: Zeroizing<String>,
    /// `stored.policy`, compiled.
    policy: Option<Arc<Policy>>,
}

/// Writes `data` to `path` with mode 0600 atomically: a temp file created 0600, fsync, rename,
/// fsync of the directory (so the rename survives a crash).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), AuthError> {
    let tmp = path.with_extension("tmp");
    let err = |source| AuthError::Write {
        path: tmp.clone(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    let werr = |source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::rename(&tmp, path).map_err(werr)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(werr)
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AuthError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AuthError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn new_key_id() -> String {
    format!("LAM{}", random_secret(17).to_ascii_uppercase())
}

/// Compiles a key's policy document (an identity policy: no `Principal`).
fn compile(policy: Option<&str>) -> Result<Option<Arc<Policy>>, PolicyError> {
    policy
        .map(|text| Policy::parse_identity(text).map(Arc::new))
        .transpose()
}

/// What [`KeyStore::open`] created on a first start.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// Where the first admin key was written (only on the very first start).
    pub admin_credentials: Option<PathBuf>,
    /// How many keys of the old format were rewritten in the new one.
    pub migrated: usize,
}

/// The controller's access keys and cluster credential.
pub struct KeyStore {
    dir: PathBuf,
    master: Arc<MasterKey>,
    keys: Mutex<BTreeMap<String, Key>>,
    cluster: Credentials,
}

impl KeyStore {
    /// Opens `dir` (created 0700 if missing) with `master` (the key in `dir/master.key`); on the
    /// first start creates the cluster token and the first admin key (written to
    /// `admin-credentials.json`). Keys of the old format are migrated (and the file rewritten).
    pub fn open(dir: &Path, master: Arc<MasterKey>) -> Result<(KeyStore, Bootstrap), AuthError> {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|source| AuthError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        let token_path = dir.join(CLUSTER_TOKEN_FILE);
        let token = match read_optional(&token_path)? {
            Some(b) => String::from_utf8_lossy(&b).trim().to_string(),
            None => {
                let t = random_secret(40);
                write_private(&token_path, t.as_bytes())?;
                t
            }
        };
        let keys_path = dir.join(KEYS_FILE);
        let mut bootstrap = Bootstrap::default();
        let (keys, first_start) = match read_optional(&keys_path)? {
            Some(b) => {
                let stored: Vec<StoredKey> =
                    serde_json::from_slice(&b).map_err(|e| AuthError::Corrupt {
                        path: keys_path.clone(),
                        detail: e.to_string(),
                    })?;
                let mut keys = BTreeMap::new();
                for k in stored {
                    bootstrap.migrated += usize::from(k.is_legacy());
                    let key = load_key(&master, k, &keys_path)?;
                    keys.insert(key.stored.access_key_id.clone(), key);
                }
                (keys, false)
            }
            None => (BTreeMap::new(), true),
        };
        let store = KeyStore {
            dir: dir.to_path_buf(),
            master,
            keys: Mutex::new(keys),
            cluster: Credentials {
                access_key_id: CLUSTER_KEY_ID.to_string(),
                secret_access_key: token,
            },
        };
        if bootstrap.migrated > 0 {
            let keys = store.keys.lock().unwrap_or_else(|p| p.into_inner());
            store.save(&keys)?;
            tracing::info!(
                keys = bootstrap.migrated,
                "access keys rewritten with envelope encryption (non-admin keys got a policy with their old rights)"
            );
        }
        if first_start {
            let (creds, _) = store.create("bootstrap admin key", true, None)?;
            let path = dir.join(ADMIN_CREDENTIALS_FILE);
            let json = serde_json::json!({
                "accessKeyId": creds.access_key_id,
                "secretAccessKey": creds.secret_access_key,
            });
            write_private(&path, format!("{json:#}\n").as_bytes())?;
            bootstrap.admin_credentials = Some(path);
        }
        Ok((store, bootstrap))
    }

    /// The cluster credential (controller <-> workers).
    pub fn cluster_credentials(&self) -> &Credentials {
        &self.cluster
    }

    pub fn cluster_token_path(&self) -> PathBuf {
        self.dir.join(CLUSTER_TOKEN_FILE)
    }

    fn save(&self, keys: &BTreeMap<String, Key>) -> Result<(), AuthError> {
        let stored: Vec<&StoredKey> = keys.values().map(|k| &k.stored).collect();
        let json = serde_json::to_vec_pretty(&stored).map_err(|e| AuthError::Corrupt {
            path: self.dir.join(KEYS_FILE),
            detail: e.to_string(),
        })?;
        write_private(&self.dir.join(KEYS_FILE), &json)
    }

    /// A new key with `policy` (an IAM identity policy document; a non-admin key without one
    /// may do nothing but what resource policies grant). The secret is returned here and never
    /// again.
    pub fn create(
        &self,
        description: &str,
        admin: bool,
        policy: Option<String>,
    ) -> Result<(Credentials, v1::AccessKey), AuthError> {
        let compiled = compile(policy.as_deref())?;
        let creds = Credentials {
            access_key_id: new_key_id(),
            secret_access_key: random_secret(40),
        };
        let sealed = self.master.seal(
            creds.access_key_id.as_bytes(),
            creds.secret_access_key.as_bytes(),
        );
        let stored = StoredKey {
            access_key_id: creds.access_key_id.clone(),
            description: description.to_string(),
            admin,
            created_ms: now_ms(),
            revoked: false,
            policy,
            secret: Some(sealed),
            nonce: None,
            secret_ciphertext: None,
            tag: None,
        };
        let info = to_proto(&stored);
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(
            creds.access_key_id.clone(),
            Key {
                stored,
                secret: Zeroizing::new(creds.secret_access_key.clone()),
                policy: compiled,
            },
        );
        if let Err(e) = self.save(&keys) {
            keys.remove(&creds.access_key_id);
            return Err(e);
        }
        tracing::info!(access_key_id = %creds.access_key_id, admin, "access key created");
        Ok((creds, info))
    }

    /// Every key, without secrets.
    pub fn list(&self) -> Vec<v1::AccessKey> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.values().map(|k| to_proto(&k.stored)).collect()
    }

    /// Replaces the policy of `id` (`None` removes it). A document that does not parse is
    /// refused and the old policy stays.
    pub fn put_policy(&self, id: &str, policy: Option<String>) -> Result<(), AuthError> {
        let compiled = compile(policy.as_deref())?;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(key) = keys.get_mut(id) else {
            return Err(AuthError::KeyNotFound(id.to_string()));
        };
        let old = (
            std::mem::replace(&mut key.stored.policy, policy),
            std::mem::replace(&mut key.policy, compiled),
        );
        if let Err(e) = self.save(&keys) {
            if let Some(key) = keys.get_mut(id) {
                (key.stored.policy, key.policy) = old;
            }
            return Err(e);
        }
        tracing::info!(access_key_id = %id, "access key policy replaced");
        Ok(())
    }

    /// The policy document of `id`, if it has one.
    pub fn get_policy(&self, id: &str) -> Result<Option<String>, AuthError> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(id)
            .map(|k| k.stored.policy.clone())
            .ok_or_else(|| AuthError::KeyNotFound(id.to_string()))
    }

    /// Who `key_id` is for `crate::iam::authorize`: whether it is an admin key and its compiled
    /// policy. `None` for a key that is unknown or revoked.
    pub fn principal(&self, key_id: &str) -> Option<Principal> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let key = keys.get(key_id).filter(|k| !k.stored.revoked)?;
        Some(Principal {
            access_key_id: key_id.to_string(),
            admin: key.stored.admin,
            policies: key.policy.iter().cloned().collect(),
        })
    }

    /// Revokes `id`: it signs nothing from now on. The last usable admin key cannot be revoked.
    pub fn revoke(&self, id: &str) -> Result<(), AuthError> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(key) = keys.get(id) else {
            return Err(AuthError::KeyNotFound(id.to_string()));
        };
        if key.stored.admin && !key.stored.revoked {
            let admins = keys
                .values()
                .filter(|k| k.stored.admin && !k.stored.revoked)
                .count();
            if admins == 1 {
                return Err(AuthError::LastAdmin(id.to_string()));
            }
        }
        if let Some(k) = keys.get_mut(id) {
            k.stored.revoked = true;
        }
        if let Err(e) = self.save(&keys) {
            if let Some(k) = keys.get_mut(id) {
                k.stored.revoked = false;
            }
            return Err(e);
        }
        tracing::info!(access_key_id = %id, "access key revoked");
        Ok(())
    }
}

/// Opens the secret of a stored key and compiles its policy; a key of the old format is turned
/// into the new one (sealed anew; a non-admin key without a policy gets [`LEGACY_USER_POLICY`]).
fn load_key(master: &MasterKey, mut k: StoredKey, path: &Path) -> Result<Key, AuthError> {
    let corrupt = |detail: String| AuthError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let id = k.access_key_id.clone();
    let undecryptable = || {
        corrupt(format!(
            "the secret of `{id}` does not decrypt with the master key in the same directory"
        ))
    };
    let secret = match (&k.secret, &k.nonce, &k.secret_ciphertext, &k.tag) {
        (Some(sealed), ..) => {
            let bytes = master
                .open(id.as_bytes(), sealed)
                .map_err(|_| undecryptable())?;
            Zeroizing::new(
                std::str::from_utf8(&bytes)
                    .map_err(|_| undecryptable())?
                    .to_string(),
            )
        }
        (None, Some(nonce), Some(ct), Some(tag)) => {
            let secret = legacy::open(master.legacy_bytes(), &id, nonce, ct, tag)
                .ok_or_else(undecryptable)?;
            k.secret = Some(master.seal(id.as_bytes(), secret.as_bytes()));
            (k.nonce, k.secret_ciphertext, k.tag) = (None, None, None);
            if !k.admin && k.policy.is_none() {
                k.policy = Some(LEGACY_USER_POLICY.to_string());
            }
            secret
        }
        _ => return Err(corrupt(format!("access key `{id}` has no secret"))),
    };
    let policy = compile(k.policy.as_deref())
        .map_err(|e| corrupt(format!("the policy of `{id}` does not parse: {e}")))?;
    Ok(Key {
        stored: k,
        secret,
        policy,
    })
}

fn to_proto(k: &StoredKey) -> v1::AccessKey {
    v1::AccessKey {
        access_key_id: k.access_key_id.clone(),
        secret_access_key: String::new(),
        description: k.description.clone(),
        admin: k.admin,
        created_ms: k.created_ms,
        revoked: k.revoked,
    }
}

impl KeyLookup for KeyStore {
    fn secret(&self, key_id: &str, path: &str) -> Result<String, AuthFailure> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(key) = keys.get(key_id) else {
            return Err(AuthFailure::UnknownKey(key_id.to_string()));
        };
        if key.stored.revoked {
            return Err(AuthFailure::Denied(
                key_id.to_string(),
                "it was revoked".to_string(),
            ));
        }
        if ADMIN_METHODS.contains(&path) && !key.stored.admin {
            return Err(AuthFailure::Denied(
                key_id.to_string(),
                format!("only admin keys may call {path}"),
            ));
        }
        Ok(key.secret.to_string())
    }
}

#[cfg(test)]
mod tests;
