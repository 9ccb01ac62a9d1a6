//! What the controller's unit tests share: a plain function record.
use std::collections::BTreeMap;

use lamina_proto::domain::{FunctionConfig, FunctionSpec, Runtime, LATEST};

/// `$LATEST` of a python3.11 function `name` (128 MB, 3 s) whose code is the 3 bytes `zip`.
pub(crate) fn function(name: &str) -> FunctionConfig {
    use sha2::Digest;
    FunctionConfig {
        spec: FunctionSpec {
            name: name.to_string(),
            runtime: Runtime::Python311,
            handler: "app.handler".to_string(),
            memory_mb: 128,
            timeout_s: 3,
            ephemeral_storage_mb: 512,
            environment: BTreeMap::new(),
            description: String::new(),
            layers: Vec::new(),
            package_type: Default::default(),
            image_config: Default::default(),
            vpc_config: None,
            role: String::new(),
            logging: Default::default(),
        },
        code_sha256: hex::encode(sha2::Sha256::digest(CODE)),
        code_size: CODE.len() as u64,
        revision_id: "r1".to_string(),
        version: LATEST.to_string(),
        last_modified_ms: 1,
        layers: Vec::new(),
        image: None,
    }
}

/// The code of [`function`].
pub(crate) const CODE: &[u8] = b"zip";
