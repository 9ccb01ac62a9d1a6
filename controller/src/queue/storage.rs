//! What the dispatcher needs of the queue's durable state: [`QueueStorage`]. [`QueueStore`]
//! (RocksDB, `store.rs` + `transitions.rs`) implements it; a replicated backend implements the
//! same, with the same atomicity (each transition one write) and durability (synced before it
//! returns).
use std::collections::HashSet;

use lamina_proto::domain::EventInvokeConfig;

use super::store::QueueStore;
use super::transitions::Ending;
use super::{Invocation, QueueConfig, QueueError};

/// Due events (request ids, oldest first) and the due time of the next one after them.
pub type Due = (Vec<String>, Option<u64>);

/// The queue's state as the dispatcher uses it. The plain methods may block (disk): call them
/// off the async threads; the async ones are the transitions, each one durable write.
#[tonic::async_trait]
pub trait QueueStorage: Send + Sync + 'static {
    fn config(&self) -> &QueueConfig;
    fn get(&self, request_id: &str) -> Result<Option<Invocation>, QueueError>;
    fn get_config(&self, function: &str) -> Result<Option<EventInvokeConfig>, QueueError>;
    fn payload(&self, request_id: &str) -> Result<Option<Vec<u8>>, QueueError>;
    /// Up to `limit` due events not in `skip`, oldest first, and the due time of the next one.
    fn scan_due(&self, now: u64, limit: usize, skip: &HashSet<String>) -> Result<Due, QueueError>;

    /// `Running`, attempt counted, due again at `lease_until`; `inv` becomes what was written.
    async fn lease(
        &self,
        inv: &mut Invocation,
        now: u64,
        lease_until: u64,
    ) -> Result<(), QueueError>;
    /// Due again at `at` (retry, backoff); the lease ends.
    async fn reschedule(&self, inv: Invocation, at: u64) -> Result<(), QueueError>;
    /// The end, with its destination.
    async fn finish(&self, inv: Invocation, ending: Ending) -> Result<(), QueueError>;
    /// Retention of finished records and idempotency keys; returns how many entries went.
    async fn housekeeping(&self, now: u64) -> Result<usize, QueueError>;

    /// Returns when there may be new work (an event accepted, a delivery finished).
    async fn woken(&self);
    /// Wakes a waiting [`Self::woken`] (or the next call to it).
    fn wake(&self);
}

#[tonic::async_trait]
impl QueueStorage for QueueStore {
    fn config(&self) -> &QueueConfig {
        QueueStore::config(self)
    }

    fn get(&self, request_id: &str) -> Result<Option<Invocation>, QueueError> {
        QueueStore::get(self, request_id)
    }

    fn get_config(&self, function: &str) -> Result<Option<EventInvokeConfig>, QueueError> {
        QueueStore::get_config(self, function)
    }

    fn payload(&self, request_id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        QueueStore::payload(self, request_id)
    }

    fn scan_due(&self, now: u64, limit: usize, skip: &HashSet<String>) -> Result<Due, QueueError> {
        QueueStore::scan_due(self, now, limit, skip)
    }

    async fn lease(
        &self,
        inv: &mut Invocation,
        now: u64,
        lease_until: u64,
    ) -> Result<(), QueueError> {
        QueueStore::lease(self, inv, now, lease_until).await
    }

    async fn reschedule(&self, inv: Invocation, at: u64) -> Result<(), QueueError> {
        QueueStore::reschedule(self, inv, at).await
    }

    async fn finish(&self, inv: Invocation, ending: Ending) -> Result<(), QueueError> {
        QueueStore::finish(self, inv, ending).await
    }

    async fn housekeeping(&self, now: u64) -> Result<usize, QueueError> {
        QueueStore::housekeeping(self, now).await
    }

    async fn woken(&self) {
        self.wake.notified().await;
    }

    fn wake(&self) {
        self.wake.notify_one();
    }
}
