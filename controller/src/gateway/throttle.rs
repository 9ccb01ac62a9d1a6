//! Per-route throttling of HTTP APIs: a token bucket per route (`burst_limit` tokens, refilled at
//! `rate_limit` per second), in memory. A request over it is answered 429 without invoking. A
//! burst of 0 refuses every request, as in API Gateway; a route without a throttle is not limited.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::model::Throttle;

struct Bucket {
    tokens: f64,
    at: Instant,
    /// The settings the bucket was made for (a changed route starts a new bucket).
    limits: (u64, u32),
}

/// Every throttled route's bucket, by `api_id \0 route_id`.
#[derive(Default)]
pub struct Buckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Buckets kept at most; past it, full ones (idle routes) are dropped.
const MAX_BUCKETS: usize = 100_000;

impl Buckets {
    /// Takes a token for a request to the route `key`; `false`: throttled.
    pub fn admit(&self, key: &str, t: &Throttle, now: Instant) -> bool {
        let limits = (t.rate_limit.to_bits(), t.burst_limit);
        let burst = f64::from(t.burst_limit);
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_BUCKETS && !map.contains_key(key) {
            map.retain(|_, b| b.tokens < burst);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
            limits,
        });
        if b.limits != limits {
            *b = Bucket {
                tokens: burst,
                at: now,
                limits,
            };
        }
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * t.rate_limit).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let b = Buckets::default();
        let t = Throttle {
            rate_limit: 2.0,
            burst_limit: 3,
        };
        let t0 = Instant::now();
        assert!((0..3).all(|_| b.admit("a", &t, t0)));
        assert!(!b.admit("a", &t, t0));
        // Half a second refills one token at 2/s.
        assert!(b.admit("a", &t, t0 + Duration::from_millis(500)));
        assert!(!b.admit("a", &t, t0 + Duration::from_millis(500)));
        // Another route has its own bucket.
        assert!(b.admit("b", &t, t0));
        // A changed throttle starts full.
        let t2 = Throttle {
            rate_limit: 1.0,
            burst_limit: 1,
        };
        assert!(b.admit("a", &t2, t0 + Duration::from_millis(500)));
        // Burst 0 blocks every request (as in API Gateway); rate 0 allows the burst only.
        let shut = Throttle {
            rate_limit: 0.0,
            burst_limit: 0,
        };
        assert!(!b.admit("c", &shut, t0));
        let once = Throttle {
            rate_limit: 0.0,
            burst_limit: 1,
        };
        assert!(b.admit("d", &once, t0));
        assert!(!b.admit("d", &once, t0 + Duration::from_secs(60)));
    }
}
