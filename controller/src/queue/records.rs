//! Reading side of the queue and housekeeping: invocation listings, dead-letter queues (list, show,
//! redrive), Lambda's destination record, and the retention of finished records and idempotency keys.
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use lamina_proto::domain::function_arn;

use super::commit::Op;
use super::store::{
    dlq_key, lock, split_time_key, unframe, DeadLetter, IdempotencyEntry, QueueStore,
    CF_BY_FUNCTION, CF_DLQ, CF_DONE, CF_IDEMPOTENCY, CF_IDEMPOTENCY_TIME, CF_INVOCATIONS,
};
use super::{Condition, Invocation, QueueError};

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
    /// Per queue: (next seq, messages), from one scan of `dead_letters`.
    pub(super) fn recover_dlq(&self) -> Result<HashMap<String, (u64, u64)>, QueueError> {
        let mut out: HashMap<String, (u64, u64)> = HashMap::new();
        let mut it = self.db.raw_iterator_cf(self.cf(CF_DLQ)?);
        it.seek_to_first();
        while let Some(key) = it.key() {
            let (queue, seq) = parse_dlq_key(key).ok_or_else(|| {
                self.corrupt("dead letter key".into(), "expected `queue \\0 seq`")
            })?;
            let e = out.entry(queue.to_string()).or_insert((1, 0));
            e.0 = e.0.max(seq + 1);
            e.1 += 1;
            it.next();
        }
        it.status().map_err(self.rocks("scan dead letters"))?;
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
        let mut it = self.db.raw_iterator_cf(self.cf(CF_DLQ)?);
        it.seek(dlq_key(queue, after_seq.saturating_add(1)));
        let mut out = Vec::new();
        while out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            match parse_dlq_key(k) {
                Some((q, _)) if q == queue => {}
                _ => break,
            }
            out.push(self.decode_dead_letter(v)?);
            it.next();
        }
        it.status().map_err(self.rocks("read dead letters"))?;
        Ok(out)
    }

    fn decode_dead_letter(&self, v: &[u8]) -> Result<DeadLetter, QueueError> {
        let (header, payload) =
            unframe(v).ok_or_else(|| self.corrupt("dead letter".into(), "bad framing"))?;
        let mut d: DeadLetter =
            serde_json::from_slice(header).map_err(|e| self.corrupt("dead letter".into(), e))?;
        d.payload = payload.to_vec();
        Ok(d)
    }

    /// Re-enqueues messages of `queue` (all, or those in `seqs`) as new events of their function and
    /// removes them, in one atomic write. Returns the new request ids.
    pub async fn redrive(&self, queue: &str, seqs: &[u64]) -> Result<Vec<String>, QueueError> {
        let _guard = self.redrive_lock.lock().await;
        let letters = self.dead_letters(queue, 0, usize::MAX)?;
        let now = super::dispatch::now_ms();
        let mut ops = Vec::new();
        let mut ids = Vec::new();
        for d in letters
            .iter()
            .filter(|d| seqs.is_empty() || seqs.contains(&d.seq))
        {
            let rid = uuid::Uuid::new_v4().to_string();
            // To the version or alias the event was first sent to, resolved again now.
            let target = (d.function_name.as_str(), d.qualifier.as_str());
            let (_, more) = self.enqueue_ops(now, &rid, target, &d.payload, "");
            ops.extend(more);
            ops.push(Op::delete(CF_DLQ, dlq_key(queue, d.seq)));
            ids.push(rid);
        }
        self.committer.commit(ops).await?;
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
        let mut prefix = function_name.as_bytes().to_vec();
        prefix.push(0);
        let mut end = function_name.as_bytes().to_vec();
        end.push(1);
        let mut it = self.db.raw_iterator_cf(self.cf(CF_BY_FUNCTION)?);
        it.seek_for_prev(&end);
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(k) = it.key() else { break };
            if !k.starts_with(&prefix) || k.len() < prefix.len() + 8 {
                break;
            }
            let rid = String::from_utf8_lossy(&k[prefix.len() + 8..]).into_owned();
            if let Some(inv) = self.get(&rid)? {
                out.push(inv);
            }
            it.prev();
        }
        it.status().map_err(self.rocks("list invocations"))?;
        Ok(out)
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
            let ops = self.retention_ops(now)?;
            if ops.is_empty() {
                break;
            }
            let n = ops
                .iter()
                .filter(|o| matches!(o, Op::Delete { cf, .. } if *cf == CF_DONE))
                .count();
            self.committer.commit(ops).await?;
            self.finished.fetch_sub(n as u64, Ordering::Relaxed);
            removed += n;
            if n < RETENTION_BATCH {
                break;
            }
        }
        let ops = self.idempotency_expiry_ops(now)?;
        removed += ops.len() / 2;
        self.committer.commit(ops).await?;
        Ok(removed)
    }

    fn retention_ops(&self, now: u64) -> Result<Vec<Op>, QueueError> {
        let max_age = self.config.retention_age.as_millis() as u64;
        let mut excess = self
            .finished
            .load(Ordering::Relaxed)
            .saturating_sub(self.config.retention_records);
        let mut it = self.db.raw_iterator_cf(self.cf(CF_DONE)?);
        it.seek_to_first();
        let mut ops = Vec::new();
        let mut n = 0;
        while let Some(k) = it.key() {
            if n >= RETENTION_BATCH {
                break;
            }
            let (finished, rid) =
                split_time_key(k).ok_or_else(|| self.corrupt("done key".into(), "short"))?;
            if excess == 0 && finished.saturating_add(max_age) > now {
                break;
            }
            excess = excess.saturating_sub(1);
            let rid = String::from_utf8_lossy(rid).into_owned();
            if let Some(inv) = self.get(&rid)? {
                ops.push(Op::delete(
                    CF_BY_FUNCTION,
                    super::store::by_function_key(&inv.function_name, inv.enqueued_ms, &rid),
                ));
                ops.push(Op::delete(CF_INVOCATIONS, rid.as_bytes()));
            }
            ops.push(Op::delete(CF_DONE, k));
            n += 1;
            it.next();
        }
        it.status().map_err(self.rocks("scan finished records"))?;
        Ok(ops)
    }

    fn idempotency_expiry_ops(&self, now: u64) -> Result<Vec<Op>, QueueError> {
        let window = self.config.idempotency_window.as_millis() as u64;
        let mut it = self.db.raw_iterator_cf(self.cf(CF_IDEMPOTENCY_TIME)?);
        it.seek_to_first();
        let mut ops = Vec::new();
        while let Some(k) = it.key() {
            if ops.len() >= RETENTION_BATCH {
                break;
            }
            let (created, key) = split_time_key(k)
                .ok_or_else(|| self.corrupt("idempotency time key".into(), "short"))?;
            if created.saturating_add(window) > now {
                break;
            }
            // The key may have been reused since (a newer entry): only delete the entry it indexes.
            if let Some(v) = self
                .db
                .get_pinned_cf(self.cf(CF_IDEMPOTENCY)?, key)
                .map_err(self.rocks("read idempotency key"))?
            {
                let e: IdempotencyEntry = serde_json::from_slice(&v)
                    .map_err(|e| self.corrupt("idempotency entry".into(), e))?;
                if e.created_ms == created {
                    ops.push(Op::delete(CF_IDEMPOTENCY, key));
                }
            }
            ops.push(Op::delete(CF_IDEMPOTENCY_TIME, k));
            it.next();
        }
        it.status().map_err(self.rocks("scan idempotency keys"))?;
        Ok(ops)
    }
}

fn parse_dlq_key(key: &[u8]) -> Option<(&str, u64)> {
    if key.len() < 9 || key[key.len() - 9] != 0 {
        return None;
    }
    let (q, rest) = key.split_at(key.len() - 9);
    Some((
        std::str::from_utf8(q).ok()?,
        u64::from_be_bytes(rest[1..].try_into().ok()?),
    ))
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
