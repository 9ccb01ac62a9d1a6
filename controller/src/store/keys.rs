//! Key layouts shared by the tables that group their keys by a name (a function, a layer, a
//! dead-letter queue): `name \0 ...`. Names never contain control bytes, so all keys of one name
//! form one contiguous range, `prefix(name)..prefix_end(name)`, and `f` never interleaves with
//! `f-2`. Numbers are big-endian, so byte order is numeric order.

/// `name \0`: the start of every key of `name`.
pub fn prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 9);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

/// `name \x01`: the first key after every key of `name`.
pub fn prefix_end(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.extend_from_slice(name.as_bytes());
    k.push(1);
    k
}

/// `name \0 rest`.
pub fn with_bytes(name: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = prefix(name);
    k.extend_from_slice(rest);
    k
}

/// `name \0 n_be` (8 bytes).
pub fn with_u64(name: &str, n: u64) -> Vec<u8> {
    with_bytes(name, &n.to_be_bytes())
}

/// `name \0 n_be` (4 bytes).
pub fn with_u32(name: &str, n: u32) -> Vec<u8> {
    with_bytes(name, &n.to_be_bytes())
}

/// `tag \0 key`: a key of a family that keeps several kinds of record apart by a one-byte tag
/// (e.g. a secret's record and its versions), each kind a contiguous range of its own.
pub fn tagged(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(tag);
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// Splits `name \0 n_be` (8 bytes).
pub fn split_u64(key: &[u8]) -> Option<(&str, u64)> {
    let (name, n) = split_fixed::<8>(key)?;
    Some((name, u64::from_be_bytes(n)))
}

/// Splits `name \0 n_be` (4 bytes); `None` for anything else (e.g. a bare `name \0`).
pub fn split_u32(key: &[u8]) -> Option<(&str, u32)> {
    let (name, n) = split_fixed::<4>(key)?;
    Some((name, u32::from_be_bytes(n)))
}

fn split_fixed<const N: usize>(key: &[u8]) -> Option<(&str, [u8; N])> {
    if key.len() < N + 1 || key[key.len() - N - 1] != 0 {
        return None;
    }
    let (name, rest) = key.split_at(key.len() - N - 1);
    Some((std::str::from_utf8(name).ok()?, rest[1..].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_name_sort_together_and_split_back() {
        let k = with_u64("f", 258);
        assert_eq!(k, b"f\0\0\0\0\0\0\0\x01\x02");
        assert_eq!(split_u64(&k), Some(("f", 258)));
        assert_eq!(split_u32(&with_u32("lib", 7)), Some(("lib", 7)));
        assert_eq!(
            split_u32(&prefix("lib")),
            None,
            "a bare prefix is no numbered key"
        );
        assert_eq!(split_u64(b"short"), None);
        assert!(prefix("f") < with_u64("f", 0) && with_u64("f", u64::MAX) < prefix_end("f"));
        assert!(
            prefix_end("f") < prefix("f-2"),
            "`f` sorts entirely before `f-2`"
        );
        assert_eq!(with_bytes("f", b"key"), b"f\0key");
    }
}
