//! What a client that has not (yet) proven who it is can make a server hold, bounded; shared by
//! the REST front (`lamina-controller`'s SigV4) and the gRPC servers (`auth::Authenticated`).
//!
//! - [`BodyBudget`]: a request body is read frame by frame within its operation's limit and a
//!   deadline, every byte charged against one process-wide budget (a semaphore of bytes) until
//!   the signature over it has been verified. A dozen unsigned 60 MB uploads cannot take the
//!   process to a gigabyte: unsigned ones are refused before their body is read (the caller
//!   checks the headers first), and the rest wait for the budget or are refused.
//! - [`ReplayCache`]: the signatures of mutating requests seen within the clock-skew window; a
//!   second use of one is refused. Bounded: when full, the oldest entries are forgotten and every
//!   request dated at or before the newest forgotten one is refused from then on (it could be a
//!   replay of a forgotten signature), so the bound never reopens a replay.
//! - [`grpc_body_limit`]: the largest request body of each gRPC method (large only for uploads).
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::auth::MAX_CLOCK_SKEW_MS;

/// Bytes of request bodies not yet verified that a process holds at once, by default.
pub const DEFAULT_UNVERIFIED_BUDGET_BYTES: usize = 256 << 20;
/// A request body must arrive within this (a 64 MB upload at about 0.5 MB/s).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a body waits for room in the budget before it is refused (the client retries).
pub const BUDGET_WAIT: Duration = Duration::from_secs(30);
/// Signatures of mutating requests remembered at most (about 80 bytes each).
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 18;

/// The largest gRPC request body: code and layer uploads (a 50 MB zip in 1 MB chunks + framing).
pub const GRPC_UPLOAD_BODY_BYTES: usize = 64 << 20;
/// Invocations (a 6 MB synchronous or up to 16 MB asynchronous payload), the cluster's own
/// traffic (heartbeats, network state) and the worker's service.
pub const GRPC_LARGE_BODY_BYTES: usize = crate::MAX_GRPC_MESSAGE_BYTES + 64 * 1024;
/// Everything else (configuration, VPCs, keys): Lambda's own limit for control-plane calls.
pub const GRPC_SMALL_BODY_BYTES: usize = 256 * 1024;

/// The largest request body accepted for the gRPC method at `path` (`/lamina.v1.Service/Method`).
pub fn grpc_body_limit(path: &str) -> usize {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    match (service, method) {
        ("lamina.v1.Functions", "CreateFunction" | "UpdateFunctionCode")
        | ("lamina.v1.Layers", "PublishLayerVersion") => GRPC_UPLOAD_BODY_BYTES,
        ("lamina.v1.Functions", "Invoke" | "InvokeWithResponseStream")
        | ("lamina.v1.Cluster" | "lamina.v1.Worker", _) => GRPC_LARGE_BODY_BYTES,
        _ => GRPC_SMALL_BODY_BYTES,
    }
}

/// Whether the gRPC method at `path` changes something (its signature goes to the replay cache).
pub fn grpc_is_mutating(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or("");
    !(method.starts_with("Get") || method.starts_with("List") || method == "FetchCode")
}

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is over the {limit} bytes this operation accepts: send less")]
    TooLarge { limit: usize },
    #[error(
        "the server is reading too many request bodies that are not yet authenticated: retry later"
    )]
    Busy,
    #[error("request body was not received within {0:?}: send it faster or in smaller requests")]
    Timeout(Duration),
    #[error("cannot read the request body: {0}")]
    Read(String),
}

/// Budget bytes held for a body until its signature is verified; released on drop.
pub struct Held {
    _permit: Option<OwnedSemaphorePermit>,
}

/// A process-wide budget of request-body bytes not yet verified (see the module docs).
#[derive(Clone)]
pub struct BodyBudget {
    sem: Arc<Semaphore>,
    bytes: usize,
}

impl BodyBudget {
    /// A budget of `bytes` (at least the largest single body, so that one always fits).
    pub fn new(bytes: usize) -> BodyBudget {
        let bytes = bytes.clamp(GRPC_UPLOAD_BODY_BYTES + (8 << 20), Semaphore::MAX_PERMITS);
        BodyBudget {
            sem: Arc::new(Semaphore::new(bytes)),
            bytes,
        }
    }

    /// The budget's size in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes not held by any body being read right now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    /// Reads `body` whole, refusing it past `limit` bytes or [`BODY_READ_TIMEOUT`], charging
    /// every frame to the budget (waiting at most [`BUDGET_WAIT`] for room). Trailers are
    /// ignored. The bytes stay charged until the returned [`Held`] is dropped.
    pub async fn read<B>(&self, body: B, limit: usize) -> Result<(Bytes, Held), BodyError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        self.read_within(body, limit, BODY_READ_TIMEOUT).await
    }

    /// [`BodyBudget::read`] with a deadline of `timeout` for the whole body.
    pub async fn read_within<B>(
        &self,
        mut body: B,
        limit: usize,
        timeout: Duration,
    ) -> Result<(Bytes, Held), BodyError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let deadline = Instant::now() + timeout;
        let mut buf = BytesMut::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(BodyError::Timeout(timeout)),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            let n = u32::try_from(data.len()).map_err(|_| BodyError::TooLarge { limit })?;
            let wait = deadline.min(Instant::now() + BUDGET_WAIT);
            let permit =
                match tokio::time::timeout_at(wait, Arc::clone(&self.sem).acquire_many_owned(n))
                    .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) | Err(_) => return Err(BodyError::Busy),
                };
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            buf.extend_from_slice(&data);
        }
        Ok((buf.freeze(), Held { _permit: held }))
    }
}

impl Default for BodyBudget {
    fn default() -> BodyBudget {
        BodyBudget::new(DEFAULT_UNVERIFIED_BUDGET_BYTES)
    }
}

/// Why a signature was refused by the [`ReplayCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// This signature was seen before.
    Seen,
    /// The request is dated at or before a signature the full cache had to forget.
    TooOld,
}

#[derive(Default)]
struct ReplayInner {
    seen: HashSet<[u8; 32]>,
    by_date: BTreeSet<(u64, [u8; 32])>,
    /// Requests dated at or before this are refused (their signatures may have been forgotten).
    floor_ms: u64,
}

/// Signatures of mutating requests within the clock-skew window (see the module docs).
pub struct ReplayCache {
    inner: Mutex<ReplayInner>,
    capacity: usize,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(ReplayInner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Records the `signature` of a request dated `date_ms` (already checked to be within the
    /// skew of `now_ms`); refuses one seen before or too old for what the cache still holds.
    pub fn check(&self, signature: &[u8], date_ms: u64, now_ms: u64) -> Result<(), Replay> {
        let key: [u8; 32] = Sha256::digest(signature).into();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Entries whose date is out of the window can never verify again: forget them freely.
        while let Some(&(date, k)) = inner.by_date.first() {
            if date.saturating_add(MAX_CLOCK_SKEW_MS) >= now_ms {
                break;
            }
            inner.by_date.pop_first();
            inner.seen.remove(&k);
        }
        if inner.seen.contains(&key) {
            return Err(Replay::Seen);
        }
        if date_ms <= inner.floor_ms {
            return Err(Replay::TooOld);
        }
        while inner.seen.len() >= self.capacity {
            let Some((date, k)) = inner.by_date.pop_first() else {
                break;
            };
            inner.seen.remove(&k);
            inner.floor_ms = inner.floor_ms.max(date);
        }
        if date_ms <= inner.floor_ms {
            return Err(Replay::TooOld);
        }
        inner.seen.insert(key);
        inner.by_date.insert((date_ms, key));
        Ok(())
    }
}

impl Default for ReplayCache {
    fn default() -> ReplayCache {
        ReplayCache::new(DEFAULT_REPLAY_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[test]
    fn replays_are_refused_and_a_full_cache_refuses_what_it_forgot() {
        let c = ReplayCache::new(2);
        let now = 1_800_000_000_000;
        assert_eq!(c.check(b"a", now - 10, now), Ok(()));
        assert_eq!(c.check(b"a", now - 10, now), Err(Replay::Seen));
        assert_eq!(c.check(b"b", now - 5, now), Ok(()));
        // Full: `a` (the oldest) is forgotten, and with it everything dated up to it.
        assert_eq!(c.check(b"c", now, now), Ok(()));
        assert_eq!(c.check(b"a", now - 10, now), Err(Replay::TooOld));
        assert_eq!(c.check(b"d", now - 10, now), Err(Replay::TooOld));
        assert_eq!(c.check(b"b", now - 5, now), Err(Replay::Seen));
        // Out of the window: dropped without raising the floor.
        let later = now + MAX_CLOCK_SKEW_MS + 1_000;
        assert_eq!(c.check(b"e", later, later), Ok(()));
        assert_eq!(c.check(b"f", later - 1, later), Ok(()));
    }

    #[test]
    fn methods_get_their_limits() {
        assert_eq!(
            grpc_body_limit("/lamina.v1.Functions/CreateFunction"),
            GRPC_UPLOAD_BODY_BYTES
        );
        assert_eq!(
            grpc_body_limit("/lamina.v1.Layers/PublishLayerVersion"),
            GRPC_UPLOAD_BODY_BYTES
        );
        assert_eq!(
            grpc_body_limit("/lamina.v1.Versions/PublishVersion"),
            GRPC_SMALL_BODY_BYTES
        );
        assert_eq!(
            grpc_body_limit("/lamina.v1.Functions/Invoke"),
            GRPC_LARGE_BODY_BYTES
        );
        assert_eq!(
            grpc_body_limit("/lamina.v1.Worker/Invoke"),
            GRPC_LARGE_BODY_BYTES
        );
        assert_eq!(
            grpc_body_limit("/lamina.v1.Network/AttachNetns"),
            GRPC_SMALL_BODY_BYTES
        );
        assert_eq!(grpc_body_limit("/x"), GRPC_SMALL_BODY_BYTES);
        assert!(grpc_is_mutating("/lamina.v1.Functions/Invoke"));
        assert!(!grpc_is_mutating("/lamina.v1.Functions/GetFunction"));
        assert!(!grpc_is_mutating("/lamina.v1.Cluster/FetchCode"));
    }

    #[tokio::test]
    async fn bodies_are_bounded_and_charged_until_verified() {
        let budget = BodyBudget::new(0);
        let total = budget.bytes();
        let (b, held) = budget
            .read(Full::new(Bytes::from_static(b"hello")), 10)
            .await
            .unwrap();
        assert_eq!(&b[..], b"hello");
        assert_eq!(budget.available(), total - 5);
        drop(held);
        assert_eq!(budget.available(), total);
        let chunks = futures_chunks(&[b"aaaa", b"bbbb", b"cccc"]);
        assert_eq!(
            budget.read(chunks, 10).await.err(),
            Some(BodyError::TooLarge { limit: 10 })
        );
        assert_eq!(budget.available(), total);
    }

    type Frames =
        tokio_stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::io::Error>>>;

    fn futures_chunks(parts: &[&'static [u8]]) -> StreamBody<Frames> {
        let frames: Vec<_> = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(tokio_stream::iter(frames))
    }
}
