//! The queue's key layouts (`store/README.md`, "The async queue").
use crate::store::keys;

/// `due_ms_be | request_id` (the due index; the same shape keys `invocations_done` by finish time).
pub(super) fn due_key(due_ms: u64, request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + request_id.len());
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// Splits `time_be | rest`.
pub(super) fn split_time_key(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.len() < 8 {
        return None;
    }
    let (t, rest) = key.split_at(8);
    Some((u64::from_be_bytes(t.try_into().ok()?), rest))
}

/// `name \0 enqueued_ms_be | request_id`.
pub(super) fn by_function_key(name: &str, enqueued_ms: u64, request_id: &str) -> Vec<u8> {
    let mut k = keys::with_u64(name, enqueued_ms);
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// `name \0 rest` (idempotency keys).
pub(super) fn name_key(name: &str, rest: &str) -> Vec<u8> {
    keys::with_bytes(name, rest.as_bytes())
}

/// `queue \0 seq_be`.
pub(super) fn dlq_key(queue: &str, seq: u64) -> Vec<u8> {
    keys::with_u64(queue, seq)
}
