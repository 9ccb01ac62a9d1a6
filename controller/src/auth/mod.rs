//! Access keys and the cluster credential.
//!
//! Files in `DATA_DIR/auth/`, all mode 0600, written atomically (temp file, fsync, rename):
//! - `master.key`: 32 random bytes (hex) that encrypt the secrets of the access keys.
//! - `access-keys.json`: the keys. A secret is stored **encrypted**, not hashed, because SigV4 and
//!   Lamina's gRPC signatures are HMACs the server must recompute: encrypt-then-MAC with
//!   HMAC-SHA256 as the PRF (a keystream `HMAC(k_enc, nonce || counter)` XORed with the secret, then
//!   `HMAC(k_mac, key_id || nonce || ciphertext)`), keys derived from `master.key`. Reading the
//!   key file alone (a backup, a copied RocksDB directory) gives no secret.
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
use std::sync::Mutex;

use lamina_proto::auth::{
    hmac_sha256, now_ms, random_secret, AuthFailure, Credentials, KeyLookup, CLUSTER_KEY_ID,
};
use lamina_proto::v1;
use serde::{Deserialize, Serialize};

pub mod sigv4;

const KEYS_FILE: &str = "access-keys.json";
const MASTER_FILE: &str = "master.key";
const CLUSTER_TOKEN_FILE: &str = "cluster-token";
const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials.json";
/// gRPC methods only admin keys may call: key management, and plugging host network namespaces
/// into VPCs.
const ADMIN_PREFIX: &str = "/lamina.v1.Auth/";
const ADMIN_METHODS: &[&str] = &[
    "/lamina.v1.Network/AttachNetns",
    "/lamina.v1.Network/DetachNetns",
];

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
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    access_key_id: String,
    description: String,
    admin: bool,
    created_ms: u64,
    revoked: bool,
    nonce: String,
    secret_ciphertext: String,
    tag: String,
}

struct Key {
    stored: StoredKey,
    secret: String,
}

/// Encrypts `secret` for `key_id` under `master`: (nonce, ciphertext, tag), hex.
fn seal(master: &[u8], key_id: &str, secret: &str) -> (String, String, String) {
    let nonce: [u8; 16] = rand::random();
    let ct = keystream_xor(master, &nonce, secret.as_bytes());
    let tag = mac(master, key_id, &nonce, &ct);
    (hex::encode(nonce), hex::encode(ct), hex::encode(tag))
}

fn keystream_xor(master: &[u8], nonce: &[u8], data: &[u8]) -> Vec<u8> {
    let k_enc = hmac_sha256(master, b"lamina access key encryption");
    data.chunks(32)
        .enumerate()
        .flat_map(|(i, chunk)| {
            let mut input = nonce.to_vec();
            input.extend_from_slice(&(i as u32).to_be_bytes());
            let block = hmac_sha256(&k_enc, &input);
            chunk
                .iter()
                .zip(block)
                .map(|(a, b)| a ^ b)
                .collect::<Vec<u8>>()
        })
        .collect()
}

fn mac(master: &[u8], key_id: &str, nonce: &[u8], ct: &[u8]) -> [u8; 32] {
    let k_mac = hmac_sha256(master, b"lamina access key mac");
    let mut input = key_id.as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(nonce);
    input.extend_from_slice(ct);
    hmac_sha256(&k_mac, &input)
}

fn open(master: &[u8], k: &StoredKey) -> Option<String> {
    let nonce = hex::decode(&k.nonce).ok()?;
    let ct = hex::decode(&k.secret_ciphertext).ok()?;
    let tag = hex::decode(&k.tag).ok()?;
    if !lamina_proto::auth::constant_time_eq(&mac(master, &k.access_key_id, &nonce, &ct), &tag) {
        return None;
    }
    String::from_utf8(keystream_xor(master, &nonce, &ct)).ok()
}

/// Writes `data` to `path` with mode 0600: a temp file, fsync, rename.
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
    std::fs::rename(&tmp, path).map_err(|source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    })
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

/// What [`KeyStore::open`] created on a first start.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// Where the first admin key was written (only on the very first start).
    pub admin_credentials: Option<PathBuf>,
}

/// The controller's access keys and cluster credential.
pub struct KeyStore {
    dir: PathBuf,
    master: Vec<u8>,
    keys: Mutex<BTreeMap<String, Key>>,
    cluster: Credentials,
}

impl KeyStore {
    /// Opens `dir` (created 0700 if missing); on the first start creates the master key, the
    /// cluster token and the first admin key (written to `admin-credentials.json`).
    pub fn open(dir: &Path) -> Result<(KeyStore, Bootstrap), AuthError> {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|source| AuthError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        let master_path = dir.join(MASTER_FILE);
        let master = match read_optional(&master_path)? {
            Some(b) => {
                hex::decode(String::from_utf8_lossy(&b).trim()).map_err(|e| AuthError::Corrupt {
                    path: master_path.clone(),
                    detail: e.to_string(),
                })?
            }
            None => {
                let m: [u8; 32] = rand::random();
                write_private(&master_path, hex::encode(m).as_bytes())?;
                m.to_vec()
            }
        };
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
        let mut keys = BTreeMap::new();
        let first_start = match read_optional(&keys_path)? {
            Some(b) => {
                let stored: Vec<StoredKey> =
                    serde_json::from_slice(&b).map_err(|e| AuthError::Corrupt {
                        path: keys_path.clone(),
                        detail: e.to_string(),
                    })?;
                for k in stored {
                    let secret = open(&master, &k).ok_or_else(|| AuthError::Corrupt {
                        path: keys_path.clone(),
                        detail: format!(
                            "the secret of `{}` does not decrypt with {}",
                            k.access_key_id,
                            master_path.display()
                        ),
                    })?;
                    keys.insert(k.access_key_id.clone(), Key { stored: k, secret });
                }
                false
            }
            None => true,
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
        let mut bootstrap = Bootstrap::default();
        if first_start {
            let (creds, _) = store.create("bootstrap admin key", true)?;
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

    /// A new key; the secret is returned here and never again.
    pub fn create(
        &self,
        description: &str,
        admin: bool,
    ) -> Result<(Credentials, v1::AccessKey), AuthError> {
        let creds = Credentials {
            access_key_id: new_key_id(),
            secret_access_key: random_secret(40),
        };
        let (nonce, secret_ciphertext, tag) =
            seal(&self.master, &creds.access_key_id, &creds.secret_access_key);
        let stored = StoredKey {
            access_key_id: creds.access_key_id.clone(),
            description: description.to_string(),
            admin,
            created_ms: now_ms(),
            revoked: false,
            nonce,
            secret_ciphertext,
            tag,
        };
        let info = to_proto(&stored);
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(
            creds.access_key_id.clone(),
            Key {
                stored,
                secret: creds.secret_access_key.clone(),
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
        if path.starts_with(ADMIN_PREFIX) && !key.stored.admin {
            return Err(AuthFailure::Denied(
                key_id.to_string(),
                "only admin keys may manage access keys".to_string(),
            ));
        }
        if ADMIN_METHODS.contains(&path) && !key.stored.admin {
            return Err(AuthFailure::Denied(
                key_id.to_string(),
                format!("only admin keys may call {path}"),
            ));
        }
        Ok(key.secret.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_creates_an_admin_key_once_and_secrets_are_encrypted_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth");
        let (store, boot) = KeyStore::open(&auth).unwrap();
        let creds_path = boot.admin_credentials.unwrap();
        let creds: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&creds_path).unwrap()).unwrap();
        let id = creds["accessKeyId"].as_str().unwrap().to_string();
        let secret = creds["secretAccessKey"].as_str().unwrap().to_string();
        assert_eq!(
            store.secret(&id, "/lamina.v1.Auth/ListAccessKeys").unwrap(),
            secret
        );
        for f in [
            KEYS_FILE,
            MASTER_FILE,
            CLUSTER_TOKEN_FILE,
            ADMIN_CREDENTIALS_FILE,
        ] {
            let mode = std::fs::metadata(auth.join(f)).unwrap().permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600,
                "{f}"
            );
        }
        let at_rest = std::fs::read_to_string(auth.join(KEYS_FILE)).unwrap();
        assert!(
            at_rest.contains(&id) && !at_rest.contains(&secret),
            "{at_rest}"
        );

        let (user, _) = store.create("ci", false).unwrap();
        let token = store.cluster_credentials().secret_access_key.clone();
        drop(store);
        // Reopened: same keys, same token, no new bootstrap key.
        let (store, boot) = KeyStore::open(&auth).unwrap();
        assert!(boot.admin_credentials.is_none());
        assert_eq!(store.list().len(), 2);
        assert_eq!(store.cluster_credentials().secret_access_key, token);
        assert_eq!(
            store
                .secret(&user.access_key_id, "/lamina.v1.Functions/Invoke")
                .unwrap(),
            user.secret_access_key
        );
        assert!(matches!(
            store.secret(&user.access_key_id, "/lamina.v1.Auth/CreateAccessKey"),
            Err(AuthFailure::Denied(..))
        ));
        assert!(matches!(
            store.secret(&user.access_key_id, "/lamina.v1.Network/AttachNetns"),
            Err(AuthFailure::Denied(..))
        ));
        assert!(store.secret(&id, "/lamina.v1.Network/AttachNetns").is_ok());
        assert!(matches!(store.revoke(&id), Err(AuthError::LastAdmin(_))));
        store.revoke(&user.access_key_id).unwrap();
        assert!(matches!(
            store.secret(&user.access_key_id, "/p"),
            Err(AuthFailure::Denied(..))
        ));
        assert!(matches!(
            store.secret("LAMNOPE", "/p"),
            Err(AuthFailure::UnknownKey(_))
        ));
        assert!(list_has_no_secret(&store));
    }

    fn list_has_no_secret(store: &KeyStore) -> bool {
        store.list().iter().all(|k| k.secret_access_key.is_empty())
    }

    #[test]
    fn a_tampered_ciphertext_does_not_decrypt() {
        let master = [7u8; 32];
        let (nonce, ct, tag) = seal(&master, "K", "secret-value-1234567890-1234567890-abcdef");
        let mut k = StoredKey {
            access_key_id: "K".into(),
            description: String::new(),
            admin: false,
            created_ms: 0,
            revoked: false,
            nonce,
            secret_ciphertext: ct,
            tag,
        };
        assert_eq!(
            open(&master, &k).as_deref(),
            Some("secret-value-1234567890-1234567890-abcdef")
        );
        assert!(open(&[8u8; 32], &k).is_none());
        k.access_key_id = "L".into();
        assert!(open(&master, &k).is_none());
    }
}
