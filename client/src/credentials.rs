//! Credentials files: `{"accessKeyId": "...", "secretAccessKey": "..."}` (what `fnctl auth
//! create-key -o json` prints and the controller writes to `admin-credentials.json`).
use std::path::{Path, PathBuf};

use lamina_proto::auth::Credentials;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credentials file {path} is not {{\"accessKeyId\": ..., \"secretAccessKey\": ...}}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    access_key_id: String,
    secret_access_key: String,
}

/// Reads a credentials file.
pub fn load_file(path: &Path) -> Result<Credentials, CredentialsError> {
    let text = std::fs::read(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let f: File = serde_json::from_slice(&text).map_err(|source| CredentialsError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Credentials {
        access_key_id: f.access_key_id,
        secret_access_key: f.secret_access_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_json_shape_and_names_the_file_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, r#"{"accessKeyId":"LAMX","secretAccessKey":"s"}"#).unwrap();
        let c = load_file(&p).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("LAMX", "s")
        );
        std::fs::write(&p, "{}").unwrap();
        let e = load_file(&p).unwrap_err().to_string();
        assert!(e.contains("c.json"), "{e}");
        let e = load_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
