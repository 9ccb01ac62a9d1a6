use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::iam::{self, RequestContext};

fn open_store(auth: &Path) -> (KeyStore, Bootstrap) {
    let master = MasterKey::load_or_create(&auth.join(MASTER_FILE)).unwrap();
    KeyStore::open(auth, Arc::new(master)).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn allowed(store: &KeyStore, id: &str, action: &str, resource: &str) -> bool {
    let p = store.principal(id).unwrap();
    iam::authorize(&p, action, resource, &RequestContext::default(), None).is_ok()
}

#[test]
fn bootstrap_creates_an_admin_key_once_and_secrets_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let (store, boot) = open_store(&auth);
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
        assert_eq!(mode(&auth.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&auth), 0o700);
    let at_rest = std::fs::read_to_string(auth.join(KEYS_FILE)).unwrap();
    assert!(
        at_rest.contains(&id) && !at_rest.contains(&secret),
        "{at_rest}"
    );
    // The new format only: an envelope, none of the old keystream's fields.
    assert!(at_rest.contains("wrapped_key") && !at_rest.contains("secret_ciphertext"));

    let (user, _) = store.create("ci", false, None).unwrap();
    let token = store.cluster_credentials().secret_access_key.clone();
    drop(store);
    // Reopened: same keys, same token, no new bootstrap key, nothing to migrate.
    let (store, boot) = open_store(&auth);
    assert!(boot.admin_credentials.is_none());
    assert_eq!(boot.migrated, 0);
    assert_eq!(store.list().len(), 2);
    assert_eq!(store.cluster_credentials().secret_access_key, token);
    assert_eq!(
        store
            .secret(&user.access_key_id, "/lamina.v1.Functions/Invoke")
            .unwrap(),
        user.secret_access_key
    );
    // Key management is authorised by policy (api/auth.rs), not refused at the signature check.
    assert!(store
        .secret(&user.access_key_id, "/lamina.v1.Auth/CreateAccessKey")
        .is_ok());
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
    assert!(store.principal(&user.access_key_id).is_none());
    assert!(matches!(
        store.secret("LAMNOPE", "/p"),
        Err(AuthFailure::UnknownKey(_))
    ));
    assert!(store.list().iter().all(|k| k.secret_access_key.is_empty()));
}

#[test]
fn a_secret_sealed_for_one_key_does_not_open_as_another() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let (store, _) = open_store(&auth);
    store.create("a", false, None).unwrap();
    drop(store);
    // Swap the two keys' sealed secrets in the file: each is bound to its own key id.
    let path = auth.join(KEYS_FILE);
    let mut keys: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let first = keys[0]["secret"].clone();
    keys[0]["secret"] = keys[1]["secret"].clone();
    keys[1]["secret"] = first;
    std::fs::write(&path, serde_json::to_vec(&keys).unwrap()).unwrap();
    let master = Arc::new(MasterKey::load_or_create(&auth.join(MASTER_FILE)).unwrap());
    assert!(matches!(
        KeyStore::open(&auth, master),
        Err(AuthError::Corrupt { .. })
    ));
}

/// The old sealing formula (the controller's before envelope encryption), written out here so
/// the fixture does not depend on the decoder under test.
fn legacy_seal(master: &[u8], key_id: &str, secret: &str) -> serde_json::Value {
    use hmac::{Hmac, Mac};
    fn h(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    let nonce: [u8; 16] = rand::random();
    let k_enc = h(master, b"lamina access key encryption");
    let ct: Vec<u8> = secret
        .as_bytes()
        .chunks(32)
        .enumerate()
        .flat_map(|(i, chunk)| {
            let block = h(&k_enc, &[&nonce[..], &(i as u32).to_be_bytes()].concat());
            chunk
                .iter()
                .zip(block)
                .map(|(a, b)| a ^ b)
                .collect::<Vec<_>>()
        })
        .collect();
    let k_mac = h(master, b"lamina access key mac");
    let tag = h(&k_mac, &[key_id.as_bytes(), &[0], &nonce, &ct].concat());
    serde_json::json!({
        "nonce": hex::encode(nonce),
        "secret_ciphertext": hex::encode(ct),
        "tag": hex::encode(tag),
    })
}

#[test]
fn keys_of_the_old_format_are_migrated_without_losing_any() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    std::fs::create_dir_all(&auth).unwrap();
    // A data directory of an older controller: the master key in hex, three keys sealed the
    // old way (a secret longer than one 32-byte keystream block included).
    let master_bytes = [0x5a_u8; 32];
    std::fs::write(auth.join(MASTER_FILE), hex::encode(master_bytes)).unwrap();
    std::fs::write(auth.join(CLUSTER_TOKEN_FILE), "tok").unwrap();
    let old = [
        (
            "LAMADMIN",
            true,
            false,
            "admin-secret-0123456789012345678901234",
        ),
        (
            "LAMUSER",
            false,
            false,
            "user-secret-01234567890123456789012345",
        ),
        ("LAMGONE", false, true, "revoked-secret"),
    ];
    let fixture: Vec<serde_json::Value> = old
        .iter()
        .map(|(id, admin, revoked, secret)| {
            let mut k = serde_json::json!({
                "access_key_id": id,
                "description": format!("{id} from before"),
                "admin": admin,
                "created_ms": 1_700_000_000_000_u64,
                "revoked": revoked,
            });
            let sealed = legacy_seal(&master_bytes, id, secret);
            for f in ["nonce", "secret_ciphertext", "tag"] {
                k[f] = sealed[f].clone();
            }
            k
        })
        .collect();
    std::fs::write(
        auth.join(KEYS_FILE),
        serde_json::to_vec_pretty(&fixture).unwrap(),
    )
    .unwrap();

    let (store, boot) = open_store(&auth);
    assert_eq!(boot.migrated, 3);
    assert!(boot.admin_credentials.is_none());
    for (id, _, revoked, secret) in old {
        if !revoked {
            assert_eq!(
                store.secret(id, "/lamina.v1.Functions/Invoke").unwrap(),
                secret
            );
        }
    }
    let list = store.list();
    assert_eq!(list.len(), 3);
    assert!(list
        .iter()
        .any(|k| k.access_key_id == "LAMGONE" && k.revoked));
    // Rewritten in the new format, atomically (0600, no temp file left).
    let at_rest = std::fs::read_to_string(auth.join(KEYS_FILE)).unwrap();
    assert!(at_rest.contains("wrapped_key"), "{at_rest}");
    assert!(!at_rest.contains("secret_ciphertext") && !at_rest.contains("\"tag\""));
    assert_eq!(mode(&auth.join(KEYS_FILE)), 0o600);
    assert!(!auth.join("access-keys.tmp").exists());
    // The user keeps its old rights through a policy; nothing admin-only; the admin needs none.
    assert_eq!(
        store.get_policy("LAMUSER").unwrap().as_deref(),
        Some(LEGACY_USER_POLICY)
    );
    assert_eq!(store.get_policy("LAMADMIN").unwrap(), None);
    let f = iam::arn::function("f", None);
    assert!(allowed(&store, "LAMUSER", "lambda:InvokeFunction", &f));
    assert!(allowed(&store, "LAMUSER", "ec2:CreateVpc", "*"));
    assert!(allowed(&store, "LAMUSER", "apigateway:POST", "*"));
    assert!(!allowed(&store, "LAMUSER", "iam:CreateAccessKey", "*"));
    assert!(store.principal("LAMADMIN").unwrap().admin);
    drop(store);

    // The second start reads the new format: nothing left to migrate, same secrets.
    let (store, boot) = open_store(&auth);
    assert_eq!(boot.migrated, 0);
    assert_eq!(
        store.secret("LAMUSER", "/p").unwrap(),
        "user-secret-01234567890123456789012345"
    );
    assert!(allowed(&store, "LAMUSER", "lambda:GetFunction", &f));
}

#[test]
fn a_new_key_has_no_rights_until_a_policy_grants_them() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    let (store, _) = open_store(&auth);
    let f = iam::arn::function("f", None);
    let (bare, _) = store.create("bare", false, None).unwrap();
    let id = bare.access_key_id;
    assert!(store.principal(&id).unwrap().policies.is_empty());
    assert!(!allowed(&store, &id, "lambda:GetFunction", &f));
    assert_eq!(store.get_policy(&id).unwrap(), None);

    let read_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:Get*","Resource":"*"}]}"#;
    store.put_policy(&id, Some(read_only.into())).unwrap();
    assert!(allowed(&store, &id, "lambda:GetFunction", &f));
    assert!(!allowed(&store, &id, "lambda:DeleteFunction", &f));
    assert_eq!(store.get_policy(&id).unwrap().as_deref(), Some(read_only));
    // The compiled policy is the one cached beside the key (no parse per request).
    let a = store.principal(&id).unwrap().policies[0].clone();
    let b = store.principal(&id).unwrap().policies[0].clone();
    assert!(Arc::ptr_eq(&a, &b));

    // A malformed document is refused, naming the problem, and the old policy stays.
    let err = store
        .put_policy(&id, Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#.into()))
        .unwrap_err();
    assert!(matches!(err, AuthError::Policy(_)), "{err}");
    assert!(err.to_string().contains("Effect"), "{err}");
    assert!(matches!(
        store.create("x", false, Some("not json".into())),
        Err(AuthError::Policy(_))
    ));
    assert_eq!(store.list().len(), 2);
    assert!(allowed(&store, &id, "lambda:GetFunction", &f));
    assert!(matches!(
        store.put_policy("LAMNOPE", None),
        Err(AuthError::KeyNotFound(_))
    ));

    let (with_policy, _) = store
        .create("deployer", false, Some(LEGACY_USER_POLICY.into()))
        .unwrap();
    drop(store);
    // Policies survive a restart (compiled again from the file).
    let (store, _) = open_store(&auth);
    assert!(allowed(&store, &id, "lambda:GetFunction", &f));
    assert!(allowed(
        &store,
        &with_policy.access_key_id,
        "lambda:DeleteFunction",
        &f
    ));
    store.put_policy(&id, None).unwrap();
    assert!(!allowed(&store, &id, "lambda:GetFunction", &f));
    assert_eq!(store.get_policy(&id).unwrap(), None);
}
