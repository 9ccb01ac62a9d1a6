//! Read-only decoder of access-key secrets stored by controllers before envelope encryption
//! (`crate::crypto`): a keystream `HMAC(k_enc, nonce || counter_be32)` XORed with the secret, then
//! a tag `HMAC(k_mac, key_id || 0 || nonce || ciphertext)`, where `k_enc = HMAC(master, "lamina
//! access key encryption")` and `k_mac = HMAC(master, "lamina access key mac")`. Only
//! [`super::KeyStore::open`] uses it, to migrate such keys once; nothing is sealed this way
//! any more. HMAC-SHA256 is RustCrypto's (through `lamina_proto::auth::hmac_sha256`).
use lamina_proto::auth::{constant_time_eq, hmac_sha256};
use zeroize::Zeroizing;

/// The secret in a stored key of the old format (hex `nonce`, `ciphertext`, `tag`), or `None` if
/// it does not authenticate under `master` and `key_id`.
pub(super) fn open(
    master: &[u8],
    key_id: &str,
    nonce: &str,
    ciphertext: &str,
    tag: &str,
) -> Option<Zeroizing<String>> {
    let nonce = hex::decode(nonce).ok()?;
    let ct = hex::decode(ciphertext).ok()?;
    let tag = hex::decode(tag).ok()?;
    let k_mac = Zeroizing::new(hmac_sha256(master, b"lamina access key mac"));
    let mut input = key_id.as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(&nonce);
    input.extend_from_slice(&ct);
    if !constant_time_eq(&hmac_sha256(&k_mac[..], &input), &tag) {
        return None;
    }
    let k_enc = Zeroizing::new(hmac_sha256(master, b"lamina access key encryption"));
    let mut plain = Zeroizing::new(Vec::with_capacity(ct.len()));
    for (i, chunk) in ct.chunks(32).enumerate() {
        let mut block_input = nonce.clone();
        block_input.extend_from_slice(&(i as u32).to_be_bytes());
        let block = Zeroizing::new(hmac_sha256(&k_enc[..], &block_input));
        plain.extend(chunk.iter().zip(block.iter()).map(|(a, b)| a ^ b));
    }
    String::from_utf8(plain.to_vec()).ok().map(Zeroizing::new)
}
