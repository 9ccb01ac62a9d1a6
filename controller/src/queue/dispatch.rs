//! The dispatcher: takes due events off the queue at a bounded rate, at most `concurrency` at a
//! time, leases each (one synced write: state `Running`, attempt counted, due again at the lease's
//! end), runs it through the [`Invoker`] and writes the outcome (one synced write: retry, backoff or
//! the end with its destination).
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lamina_proto::domain::{Destination, EventInvokeConfig};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::policy::{self, Next};
use super::storage::QueueStorage;
use super::store::QueueStore;
use super::transitions::Ending;
use super::{now_ms, Condition, Invocation, QueueError};
use crate::store::writers::lock;

/// Longest sleep of an idle dispatcher (it is woken by new events anyway).
const IDLE_WAIT: Duration = Duration::from_millis(250);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// How long a stopping dispatcher waits for the deliveries in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function ran; `executed_version` is the version that ran ("$LATEST" or a number).
    Success {
        payload: Vec<u8>,
        executed_version: String,
    },
    /// The function ran and failed (`Handled`/`Unhandled`); `payload` is the error JSON.
    FunctionError {
        kind: String,
        payload: Vec<u8>,
        executed_version: String,
    },
    /// It did not run: no worker, no capacity. Backs off without counting an attempt.
    Throttled(String),
    /// It may or may not have run: the worker was lost or the call failed. Backs off.
    SystemError(String),
}

/// Runs deliveries: the controller's implementation places them on workers.
#[tonic::async_trait]
pub trait Invoker: Send + Sync + 'static {
    /// The timeout of the version `name:qualifier` runs ("" = `$LATEST`; an alias: the longer of
    /// its versions'), `None` when the function, version or alias does not exist.
    async fn function_timeout(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<Duration>, String>;
    /// `false` when no worker could take a delivery now: events back off without a lease.
    fn ready(&self) -> bool {
        true
    }
    /// Delivers one event to `function_name:qualifier` ("" = unqualified), resolving the qualifier
    /// now (an alias routes by its current configuration).
    async fn invoke(
        &self,
        function_name: &str,
        qualifier: &str,
        request_id: &str,
        payload: Vec<u8>,
    ) -> Outcome;
}

/// Delivers the events of `S` (the RocksDB [`QueueStore`] unless a test or another backend
/// names its own).
pub struct Dispatcher<S: QueueStorage = QueueStore> {
    store: Arc<S>,
    invoker: Arc<dyn Invoker>,
}

struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        let rate = f64::from(rate.max(1));
        let capacity = (rate / 20.0).max(1.0);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    fn available(&mut self) -> usize {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate)
            .min(self.capacity);
        self.last = now;
        self.tokens.floor() as usize
    }

    fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    fn until_next(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / self.rate).max(0.001))
    }
}

impl<S: QueueStorage> Dispatcher<S> {
    pub fn new(store: Arc<S>, invoker: Arc<dyn Invoker>) -> Dispatcher<S> {
        Dispatcher { store, invoker }
    }

    /// Delivers until `shutdown`, then waits a little for the deliveries in flight (those still
    /// running keep their lease and are redelivered after the restart).
    pub async fn run(self, shutdown: CancellationToken) {
        let concurrency = self.store.config().concurrency.max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut bucket = Bucket::new(self.store.config().dispatch_rate);
        let mut last_housekeeping = Instant::now();
        let housekeeping_running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY
                && !housekeeping_running.swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                last_housekeeping = Instant::now();
                let store = Arc::clone(&self.store);
                let flag = Arc::clone(&housekeeping_running);
                tokio::spawn(async move {
                    if let Err(e) = store.housekeeping(now_ms()).await {
                        tracing::warn!(error = %e, "queue housekeeping failed");
                    }
                    flag.store(false, std::sync::atomic::Ordering::Release);
                });
            }
            let free = permits.available_permits();
            let tokens = bucket.available();
            let want = free.min(tokens);
            if want == 0 {
                let wait = if tokens == 0 {
                    bucket.until_next()
                } else {
                    IDLE_WAIT
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.store.woken() => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
            let skip = lock(&in_flight).clone();
            let store = Arc::clone(&self.store);
            let now = now_ms();
            let scanned =
                tokio::task::spawn_blocking(move || store.scan_due(now, want, &skip)).await;
            let (due, next) = match scanned {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot scan the queue");
                    (Vec::new(), None)
                }
                Err(e) => {
                    tracing::error!(error = %e, "queue scan task failed");
                    (Vec::new(), None)
                }
            };
            bucket.take(due.len());
            let got = due.len();
            for rid in due {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                lock(&in_flight).insert(rid.clone());
                let store = Arc::clone(&self.store);
                let invoker = Arc::clone(&self.invoker);
                let in_flight = Arc::clone(&in_flight);
                tokio::spawn(async move {
                    if let Err(e) = deliver(&store, invoker.as_ref(), &rid).await {
                        match e {
                            QueueError::Failpoint(_) => {}
                            e => {
                                tracing::error!(request_id = %rid, error = %e, "delivery step failed; it will be retried")
                            }
                        }
                    }
                    lock(&in_flight).remove(&rid);
                    drop(permit);
                    store.wake();
                });
            }
            if got < want {
                let wait = next
                    .map(|t| Duration::from_millis(t.saturating_sub(now_ms())))
                    .unwrap_or(IDLE_WAIT)
                    .min(IDLE_WAIT);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.store.woken() => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
        let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
        if tokio::time::timeout(STOP_GRACE, permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                "deliveries still running at shutdown: they are redelivered after the restart"
            );
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, QueueError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueueError::Task(e.to_string()))?
}

/// One delivery step of event `rid`: expiry check, lease, invocation, outcome.
pub(super) async fn deliver<S: QueueStorage>(
    store: &Arc<S>,
    invoker: &dyn Invoker,
    rid: &str,
) -> Result<(), QueueError> {
    let (s, id) = (Arc::clone(store), rid.to_string());
    let found = blocking(move || {
        let inv = s.get(&id)?;
        let cfg = match &inv {
            Some(inv) => s.get_config(&inv.function_name)?,
            None => None,
        };
        Ok((inv, cfg))
    })
    .await?;
    let (Some(mut inv), cfg) = found else {
        return Ok(());
    };
    if inv.state.is_terminal() {
        return Ok(());
    }
    let cfg = cfg.unwrap_or_default();
    let scale = store.config().time_scale;
    let expires_at =
        inv.enqueued_ms + policy::max_age(cfg.max_event_age_s, scale).as_millis() as u64;
    let now = now_ms();
    let timeout = match invoker
        .function_timeout(&inv.function_name, &inv.qualifier)
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => {
            inv.last_error = if inv.qualifier.is_empty() {
                format!("function `{}` not found", inv.function_name)
            } else {
                format!(
                    "function `{}:{}` not found",
                    inv.function_name, inv.qualifier
                )
            };
            return finish(
                store,
                invoker,
                inv,
                &cfg,
                Condition::FunctionNotFound,
                "",
                &[],
            )
            .await;
        }
        Err(e) => return throttle(store, invoker, inv, &cfg, expires_at, e).await,
    };
    if now >= expires_at {
        return finish(
            store,
            invoker,
            inv,
            &cfg,
            Condition::EventAgeExceeded,
            "",
            &[],
        )
        .await;
    }
    if !invoker.ready() {
        let msg = "no worker is available".to_string();
        return throttle(store, invoker, inv, &cfg, expires_at, msg).await;
    }
    fail::fail_point!("queue::before_lease", |_| Err(QueueError::Failpoint(
        "queue::before_lease"
    )));
    let lease_until = now + (timeout + store.config().lease_headroom).as_millis() as u64;
    store.lease(&mut inv, now, lease_until).await?;

    let (s, id) = (Arc::clone(store), rid.to_string());
    let payload = blocking(move || s.payload(&id)).await?.unwrap_or_default();
    let request_payload = payload.clone();
    let outcome = invoker
        .invoke(&inv.function_name, &inv.qualifier, rid, payload)
        .await;
    fail::fail_point!("queue::before_ack", |_| Err(QueueError::Failpoint(
        "queue::before_ack"
    )));
    let now = now_ms();
    match outcome {
        Outcome::Success {
            payload,
            executed_version,
        } => {
            inv.executed_version = executed_version;
            let record = (request_payload, payload);
            finish_with(store, invoker, inv, &cfg, Condition::Success, "", record).await
        }
        Outcome::FunctionError {
            kind,
            payload,
            executed_version,
        } => {
            inv.executed_version = executed_version;
            inv.function_errors += 1;
            inv.last_error = error_summary(&kind, &payload);
            match policy::after_function_error(
                now,
                inv.function_errors,
                cfg.max_retry_attempts,
                expires_at,
                scale,
            ) {
                Next::RetryAt(at) => store.reschedule(inv, at).await,
                Next::Exhausted => {
                    let record = (request_payload, payload);
                    finish_with(
                        store,
                        invoker,
                        inv,
                        &cfg,
                        Condition::RetriesExhausted,
                        &kind,
                        record,
                    )
                    .await
                }
                Next::Expired => {
                    let record = (request_payload, payload);
                    finish_with(
                        store,
                        invoker,
                        inv,
                        &cfg,
                        Condition::EventAgeExceeded,
                        &kind,
                        record,
                    )
                    .await
                }
            }
        }
        Outcome::Throttled(msg) => {
            inv.attempts = inv.attempts.saturating_sub(1);
            throttle(store, invoker, inv, &cfg, expires_at, msg).await
        }
        Outcome::SystemError(msg) => throttle(store, invoker, inv, &cfg, expires_at, msg).await,
    }
}

/// `Handled: ValueError: boom` from the error JSON `{errorType, errorMessage}`.
fn error_summary(kind: &str, payload: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let ty = v["errorType"].as_str().unwrap_or("");
    let msg = v["errorMessage"].as_str().unwrap_or("");
    let mut s = format!("{kind}: {ty}: {msg}");
    s.truncate(1024);
    s
}

async fn throttle<S: QueueStorage>(
    store: &Arc<S>,
    invoker: &dyn Invoker,
    mut inv: Invocation,
    cfg: &EventInvokeConfig,
    expires_at: u64,
    msg: String,
) -> Result<(), QueueError> {
    inv.throttles += 1;
    inv.last_error = msg;
    match policy::after_throttle(
        now_ms(),
        inv.throttles,
        expires_at,
        store.config().time_scale,
    ) {
        Next::RetryAt(at) => store.reschedule(inv, at).await,
        Next::Exhausted | Next::Expired => {
            finish(
                store,
                invoker,
                inv,
                cfg,
                Condition::EventAgeExceeded,
                "",
                &[],
            )
            .await
        }
    }
}

async fn finish<S: QueueStorage>(
    store: &Arc<S>,
    invoker: &dyn Invoker,
    inv: Invocation,
    cfg: &EventInvokeConfig,
    condition: Condition,
    function_error: &str,
    response: &[u8],
) -> Result<(), QueueError> {
    let (s, id) = (Arc::clone(store), inv.request_id.clone());
    let payload = blocking(move || s.payload(&id)).await?.unwrap_or_default();
    let record = (payload, response.to_vec());
    finish_with(store, invoker, inv, cfg, condition, function_error, record).await
}

/// The end of an invocation: finds whether a function destination exists, then writes the end
/// with its destination in one synced write.
async fn finish_with<S: QueueStorage>(
    store: &Arc<S>,
    invoker: &dyn Invoker,
    inv: Invocation,
    cfg: &EventInvokeConfig,
    condition: Condition,
    function_error: &str,
    (request_payload, response_payload): (Vec<u8>, Vec<u8>),
) -> Result<(), QueueError> {
    let destination = if condition == Condition::Success {
        cfg.on_success.clone()
    } else {
        cfg.on_failure.clone()
    };
    let destination_exists = match &destination {
        Some(Destination::Function(name)) => {
            matches!(invoker.function_timeout(name, "").await, Ok(Some(_)))
        }
        _ => true,
    };
    let ending = Ending {
        condition,
        function_error: function_error.to_string(),
        request_payload,
        response_payload,
        destination,
        destination_exists,
    };
    store.finish(inv, ending).await
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
