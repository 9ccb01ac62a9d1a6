//! Reading side of the queue and housekeeping: invocation listings, dead-letter queues (list, show,
//! redrive), Lambda's destination record, and the retention of finished records and idempotency keys.
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use lamina_proto::domain::function_arn;

use super::keys::{by_function_key, dlq_key, split_time_key};
use super::store::{DeadLetter, QueueStore};
use super::{now_ms, Condition, Invocation, QueueError};
use crate::store::keys;
use crate::store::table::{Empty, Start, Table};
use crate::store::writers::lock;
use crate::store::{schema, Batch};

/// Deletions per housekeeping write.
const RETENTION_BATCH: usize = 2000;

/// Lambda's destination record for an invocation that ended with `condition`.
pub fn destination_record(
    inv: &Invocation,
    condition: Condition,
    now_ms: u64,
    request_payload: &[u8],
    function_error: &str,
    response_payload: &[u8],
) -> String {
    let as_json = |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
    };
    let mut response = serde_json::json!({
        "statusCode": 200,
        "executedVersion": if inv.executed_version.is_empty() {
            lamina_proto::domain::LATEST
        } else {
            &inv.executed_version
        },
    });
    if !function_error.is_empty() {
        response["functionError"] = function_error.into();
    }
    let mut record = serde_json::json!({
        "version": "1.0",
        "timestamp": rfc3339(now_ms),
        "requestContext": {
            "requestId": inv.request_id,
            "functionArn": format!("{}:{}", function_arn(&inv.function_name), if inv.qualifier.is_empty() { lamina_proto::domain::LATEST } else { &inv.qualifier }),
            "condition": condition.as_str(),
            "approximateInvokeCount": inv.attempts,
        },
        "requestPayload": as_json(request_payload),
    });
    // An event that never ran (expired, function gone) has no response, as in Lambda.
    if inv.attempts > 0 && condition != Condition::EventAgeExceeded
        || condition == Condition::Success
    {
        record["responseContext"] = response;
        if !response_payload.is_empty() {
            record["responsePayload"] = as_json(response_payload);
        }
    }
    record.to_string()
}

/// `2019-11-24T21:52:47.333Z`.
fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

impl QueueStore {
    /// Per queue: (next seq, messages), from one scan of `dead_letters` (keys only).
    pub(super) fn recover_dlq(&self) -> Result<HashMap<String, (u64, u64)>, QueueError> {
        let mut out: HashMap<String, (u64, u64)> = HashMap::new();
        self.dead_letter_table().walk(Start::First, |e| {
            let (queue, seq) = keys::split_u64(e.key())
                .ok_or_else(|| self.corrupt("dead letter key", "expected `queue \\0 seq`"))?;
            let entry = out.entry(queue.to_string()).or_insert((1, 0));
            entry.0 = entry.0.max(seq + 1);
            entry.1 += 1;
            Ok::<_, QueueError>(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// Dead-letter queues with their message counts, by name.
    pub fn dead_letter_queues(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = lock(&self.dlq)
            .iter()
            .map(|(k, (_, n))| (k.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// Messages of `queue` with `seq > after_seq`, oldest first.
    pub fn dead_letters(
        &self,
        queue: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let from = dlq_key(queue, after_seq.saturating_add(1));
        let within = |k: &[u8]| matches!(keys::split_u64(k), Some((q, _)) if q == queue);
        Ok(self
            .dead_letter_table()
            .page(Start::At(&from), limit, within)?)
    }

    /// Re-enqueues messages of `queue` (all, or those in `seqs`) as new events of their function and
    /// removes them, in one atomic write. Returns the new request ids.
    pub async fn redrive(&self, queue: &str, seqs: &[u64]) -> Result<Vec<String>, QueueError> {
        let _guard = self.redrive_locks.lock(queue.as_bytes()).await;
        let letters = self.dead_letters(queue, 0, usize::MAX)?;
        let now = now_ms();
        let mut batch = Batch::new();
        let mut ids = Vec::new();
        for d in letters
            .iter()
            .filter(|d| seqs.is_empty() || seqs.contains(&d.seq))
        {
            let rid = uuid::Uuid::new_v4().to_string();
            // To the version or alias the event was first sent to, resolved again now.
            let target = (d.function_name.as_str(), d.qualifier.as_str());
            self.enqueue_in(&mut batch, now, &rid, target, &d.payload, "")?;
            self.dead_letter_table()
                .delete(&mut batch, dlq_key(queue, d.seq));
            ids.push(rid);
        }
        self.committer.commit(batch).await?;
        if let Some(e) = lock(&self.dlq).get_mut(queue) {
            e.1 = e.1.saturating_sub(ids.len() as u64);
        }
        self.wake.notify_one();
        Ok(ids)
    }

    /// Invocations of `function_name`, newest first.
    pub fn list_invocations(
        &self,
        function_name: &str,
        limit: usize,
    ) -> Result<Vec<Invocation>, QueueError> {
        let prefix = keys::prefix(function_name);
        // Newest first: backwards from the end of the function's range.
        let end = keys::prefix_end(function_name);
        let within = |k: &[u8]| k.starts_with(&prefix) && k.len() >= prefix.len() + 8;
        self.by_function()
            .page_with(Start::Back(&end), limit, within, |e| {
                let rid = String::from_utf8_lossy(&e.key()[prefix.len() + 8..]);
                self.get(&rid)
            })
    }

    /// Finished records kept now.
    pub fn finished_records(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }

    /// Deletes finished records beyond the retention (count and age) and idempotency keys older than
    /// the window, a bounded batch at a time. Returns how many entries went.
    pub async fn housekeeping(&self, now: u64) -> Result<usize, QueueError> {
        let mut removed = 0;
        loop {
            let batch = self.retention_batch(now)?;
            if batch.is_empty() {
                break;
            }
            let n = batch.deletes_in(schema::INVOCATIONS_DONE);
            self.committer.commit(batch).await?;
            self.finished.fetch_sub(n as u64, Ordering::Relaxed);
            removed += n;
            if n < RETENTION_BATCH {
                break;
            }
        }
        let (batch, deletes) = self.idempotency_expiry_batch(now)?;
        removed += deletes / 2;
        self.committer.commit(batch).await?;
        Ok(removed)
    }

    fn retention_batch(&self, now: u64) -> Result<Batch<'static>, QueueError> {
        let max_age = self.config.retention_age.as_millis() as u64;
        let mut excess = self
            .finished
            .load(Ordering::Relaxed)
            .saturating_sub(self.config.retention_records);
        let mut batch = Batch::new();
        let mut n = 0;
        let done = self.done();
        self.walk_by_time(&done, "done key", |finished, rid, key| {
            if n >= RETENTION_BATCH || excess == 0 && finished.saturating_add(max_age) > now {
                return Ok(false);
            }
            excess = excess.saturating_sub(1);
            let rid = String::from_utf8_lossy(rid).into_owned();
            if let Some(inv) = self.get(&rid)? {
                self.by_function().delete(
                    &mut batch,
                    by_function_key(&inv.function_name, inv.enqueued_ms, &rid),
                );
                self.invocations().delete(&mut batch, rid.as_bytes());
            }
            done.delete(&mut batch, key);
            n += 1;
            Ok(true)
        })?;
        Ok(batch)
    }

    /// The deletion of idempotency keys past the window, and how many deletes it holds.
    fn idempotency_expiry_batch(&self, now: u64) -> Result<(Batch<'static>, usize), QueueError> {
        let window = self.config.idempotency_window.as_millis() as u64;
        let mut batch = Batch::new();
        let mut deletes = 0;
        let by_time = self.idempotency_by_time();
        self.walk_by_time(
            &by_time,
            "idempotency time key",
            |created, key, time_key| {
                if deletes >= RETENTION_BATCH || created.saturating_add(window) > now {
                    return Ok(false);
                }
                // The key may have been reused since (a newer entry): only delete the entry it indexes.
                if let Some(entry) = self.idempotency().get(key)? {
                    if entry.created_ms == created {
                        self.idempotency().delete(&mut batch, key);
                        deletes += 1;
                    }
                }
                by_time.delete(&mut batch, time_key);
                deletes += 1;
                Ok(true)
            },
        )?;
        Ok((batch, deletes))
    }

    /// Walks an index keyed `time_be | rest` oldest first: `visit` gets the time, the rest and
    /// the whole key, and returns `false` to stop.
    fn walk_by_time(
        &self,
        index: &Table<'_, Empty>,
        what: &str,
        mut visit: impl FnMut(u64, &[u8], &[u8]) -> Result<bool, QueueError>,
    ) -> Result<(), QueueError> {
        index.walk(Start::First, |e| {
            let (time, rest) =
                split_time_key(e.key()).ok_or_else(|| self.corrupt(what, "short"))?;
            Ok(if visit(time, rest, e.key())? {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::State;

    fn inv() -> Invocation {
        Invocation {
            request_id: "r1".into(),
            function_name: "f".into(),
            state: State::Failed,
            attempts: 3,
            function_errors: 3,
            throttles: 0,
            enqueued_ms: 0,
            updated_ms: 0,
            finished_ms: 0,
            due_ms: 0,
            last_error: String::new(),
            destination: None,
            idempotency_key: String::new(),
            condition: None,
            payload_size: 0,
            qualifier: String::new(),
            executed_version: String::new(),
        }
    }

    #[test]
    fn record_has_lambdas_shape() {
        let r = destination_record(
            &inv(),
            Condition::RetriesExhausted,
            1_574_632_367_333,
            br#"{"k":1}"#,
            "Unhandled",
            br#"{"errorMessage":"boom"}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["version"], "1.0");
        assert_eq!(v["timestamp"], "2019-11-24T21:52:47.333Z");
        assert_eq!(v["requestContext"]["requestId"], "r1");
        assert_eq!(v["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(v["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(
            v["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"
        );
        assert_eq!(v["requestPayload"]["k"], 1);
        assert_eq!(v["responseContext"]["statusCode"], 200);
        assert_eq!(v["responseContext"]["functionError"], "Unhandled");
        assert_eq!(v["responseContext"]["executedVersion"], "$LATEST");
        assert_eq!(v["responsePayload"]["errorMessage"], "boom");
        let mut ran_v2 = inv();
        ran_v2.executed_version = "2".into();
        let r = destination_record(&ran_v2, Condition::Success, 0, b"{}", "", b"{}");
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["responseContext"]["executedVersion"], "2");
        let expired = destination_record(&inv(), Condition::EventAgeExceeded, 0, b"x", "", b"");
        let v: serde_json::Value = serde_json::from_str(&expired).unwrap();
        assert_eq!(v["requestPayload"], "x");
        assert!(v.get("responseContext").is_none(), "{v}");
    }
}
