//! Envelope encryption of the secrets the controller keeps at rest (access-key secrets, Secrets
//! Manager values, SecureString parameters).
//!
//! One key-encryption key (KEK), the [`MasterKey`], lives in `DATA_DIR/auth/master.key` (32 random
//! bytes, hex; mode 0600, created atomically). [`MasterKey::seal`] draws a fresh random 32-byte
//! data key for every value, encrypts the value under it with ChaCha20-Poly1305 and wraps the data
//! key under the KEK, also with ChaCha20-Poly1305; both carry the caller's associated data (the
//! name the value belongs to), so a sealed value copied under another name does not open. Only
//! vetted implementations are used (RustCrypto's `chacha20poly1305`); key material is wiped from
//! memory when dropped (`zeroize`).
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Associated-data prefix of a wrapped data key (so a wrapped key is never mistaken for a value).
const WRAP_DOMAIN: &[u8] = b"lamina data key v1\0";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("cannot read the master key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the master key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the master key {path} is corrupt: {detail}; restore it from a backup (without it no stored secret can be decrypted)")]
    CorruptKey { path: PathBuf, detail: String },
    #[error("a sealed value is malformed: {0}")]
    Malformed(String),
    #[error("a sealed value does not decrypt: it was altered, belongs to another name, or was sealed under another master key")]
    Decrypt,
}

/// A value sealed by [`MasterKey::seal`]; every field is base64.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sealed {
    /// The data key's wrapping nonce (12 bytes) followed by the wrapped data key and its tag.
    pub wrapped_key: String,
    /// The nonce of the value under the data key (12 bytes).
    pub nonce: String,
    /// The value encrypted under the data key, with its tag.
    pub ciphertext: String,
}

/// The key-encryption key. `Debug` never shows it; it is wiped from memory when dropped.
pub struct MasterKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn cipher(key: &[u8; KEY_LEN]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(key))
}

fn wrap_aad(aad: &[u8]) -> Vec<u8> {
    [WRAP_DOMAIN, aad].concat()
}

impl MasterKey {
    /// A random key held only in memory (a controller without a data directory, tests).
    pub fn ephemeral() -> MasterKey {
        MasterKey {
            key: Zeroizing::new(random()),
        }
    }

    /// Reads the key at `path` (hex, 32 bytes), or creates it: its directory (0700) if missing,
    /// then the file with mode 0600, written to a temp file, synced, linked into place (never
    /// over a key another process created meanwhile) and the directory synced.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, CryptoError> {
        if let Some(key) = Self::read(path)? {
            return Ok(key);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let werr = |p: &Path| {
            let p = p.to_path_buf();
            move |source| CryptoError::Write { path: p, source }
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(werr(dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(werr(dir))?;
        }
        let key = MasterKey::ephemeral();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "master.key".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(random::<8>())));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(Zeroizing::new(hex::encode(*key.key)).as_bytes())?;
            f.sync_all()?;
            // A hard link fails if `path` exists: a key another process created first wins.
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::read(path)?.ok_or_else(|| CryptoError::CorruptKey {
                    path: path.to_path_buf(),
                    detail: "it vanished while it was created".into(),
                });
            }
            Err(source) => {
                return Err(CryptoError::Write {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(werr(dir))?;
        tracing::info!(path = %path.display(), "created the master key");
        Ok(key)
    }

    fn read(path: &Path) -> Result<Option<MasterKey>, CryptoError> {
        let text = match std::fs::read(path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CryptoError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let corrupt = |detail: &str| CryptoError::CorruptKey {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        };
        let trimmed = std::str::from_utf8(&text)
            .map_err(|_| corrupt("it is not hex text"))?
            .trim();
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(trimmed, &mut key[..])
            .map_err(|_| corrupt("it must hold 32 bytes as 64 hex digits"))?;
        Ok(Some(MasterKey { key }))
    }

    /// The raw key, for the read-only decoder of access keys sealed before envelope encryption.
    pub(crate) fn legacy_bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// Encrypts `plaintext` under a fresh data key bound to `aad` (the name it belongs to).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let data_key = Zeroizing::new(random::<KEY_LEN>());
        let nonce = random::<NONCE_LEN>();
        let wrap_nonce = random::<NONCE_LEN>();
        // ChaCha20-Poly1305 encryption fails only past its ~256 GB message limit.
        let ciphertext = cipher(&data_key)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let wrapped = cipher(&self.key)
            .encrypt(
                Nonce::from_slice(&wrap_nonce),
                Payload {
                    msg: &data_key[..],
                    aad: &wrap_aad(aad),
                },
            )
            .unwrap_or_default();
        Sealed {
            wrapped_key: B64.encode([&wrap_nonce[..], &wrapped].concat()),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        }
    }

    /// Decrypts what [`MasterKey::seal`] sealed with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let decode = |field: &str, v: &str| {
            B64.decode(v)
                .map_err(|e| CryptoError::Malformed(format!("{field} is not base64: {e}")))
        };
        let wrapped = decode("wrapped_key", &sealed.wrapped_key)?;
        let nonce = decode("nonce", &sealed.nonce)?;
        let ciphertext = decode("ciphertext", &sealed.ciphertext)?;
        if wrapped.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return Err(CryptoError::Malformed(format!(
                "wrapped_key must be {} bytes",
                NONCE_LEN + KEY_LEN + TAG_LEN
            )));
        }
        if nonce.len() != NONCE_LEN {
            return Err(CryptoError::Malformed(format!(
                "nonce must be {NONCE_LEN} bytes"
            )));
        }
        let (wrap_nonce, wrapped) = wrapped.split_at(NONCE_LEN);
        let data_key = Zeroizing::new(
            cipher(&self.key)
                .decrypt(
                    Nonce::from_slice(wrap_nonce),
                    Payload {
                        msg: wrapped,
                        aad: &wrap_aad(aad),
                    },
                )
                .map_err(|_| CryptoError::Decrypt)?,
        );
        let data_key: &[u8; KEY_LEN] = data_key[..].try_into().map_err(|_| CryptoError::Decrypt)?;
        cipher(data_key)
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_aad_only() {
        let key = MasterKey::ephemeral();
        let sealed = key.seal(b"secret/db", b"hunter2");
        assert_eq!(&key.open(b"secret/db", &sealed).unwrap()[..], b"hunter2");
        assert!(matches!(
            key.open(b"secret/other", &sealed),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            MasterKey::ephemeral().open(b"secret/db", &sealed),
            Err(CryptoError::Decrypt)
        ));
        let empty = key.seal(b"", b"");
        assert!(key.open(b"", &empty).unwrap().is_empty());
        // Serialized and read back (the stores keep it as JSON).
        let json = serde_json::to_string(&sealed).unwrap();
        let back: Sealed = serde_json::from_str(&json).unwrap();
        assert_eq!(&key.open(b"secret/db", &back).unwrap()[..], b"hunter2");
    }

    fn flip(field: &str, at: usize) -> String {
        let mut b = B64.decode(field).unwrap();
        b[at] ^= 1;
        B64.encode(b)
    }

    #[test]
    fn tampering_with_any_part_is_refused() {
        let key = MasterKey::ephemeral();
        let sealed = key.seal(b"k", b"the value");
        for tampered in [
            Sealed {
                ciphertext: flip(&sealed.ciphertext, 0),
                ..sealed.clone()
            },
            Sealed {
                nonce: flip(&sealed.nonce, 3),
                ..sealed.clone()
            },
            // The wrapping nonce, the wrapped data key, its tag.
            Sealed {
                wrapped_key: flip(&sealed.wrapped_key, 0),
                ..sealed.clone()
            },
            Sealed {
                wrapped_key: flip(&sealed.wrapped_key, 20),
                ..sealed.clone()
            },
            Sealed {
                wrapped_key: flip(&sealed.wrapped_key, 59),
                ..sealed.clone()
            },
        ] {
            assert!(
                matches!(key.open(b"k", &tampered), Err(CryptoError::Decrypt)),
                "{tampered:?}"
            );
        }
        let short = Sealed {
            wrapped_key: B64.encode([0u8; 10]),
            ..sealed.clone()
        };
        assert!(matches!(
            key.open(b"k", &short),
            Err(CryptoError::Malformed(_))
        ));
        let not_b64 = Sealed {
            ciphertext: "***".into(),
            ..sealed
        };
        assert!(matches!(
            key.open(b"k", &not_b64),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn every_seal_uses_a_fresh_data_key_and_nonce() {
        let key = MasterKey::ephemeral();
        let a = key.seal(b"k", b"same plaintext");
        let b = key.seal(b"k", b"same plaintext");
        assert_ne!(a.wrapped_key, b.wrapped_key);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(!a.ciphertext.contains("same"));
    }

    #[test]
    fn the_key_file_is_private_persistent_and_in_the_old_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth").join("master.key");
        let key = MasterKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temp file left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        assert_eq!(hex::decode(text.trim()).unwrap(), key.legacy_bytes());
        let sealed = key.seal(b"a", b"b");
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(&again.open(b"a", &sealed).unwrap()[..], b"b");
        assert!(!format!("{again:?}").contains(&text.trim()[..8]));

        // A key file written by an older controller (hex with a newline) is read as it is.
        let old = dir.path().join("old.key");
        std::fs::write(&old, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(
            MasterKey::load_or_create(&old).unwrap().legacy_bytes(),
            &[0xab; 32]
        );
        std::fs::write(&old, "not hex").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&old),
            Err(CryptoError::CorruptKey { .. })
        ));
    }
}
