//! Retry and backoff decisions, pure so they are tested without a clock. All durations are real
//! durations already multiplied by the controller's time scale.
use std::time::Duration;

/// Delay before retry `n` (1-based) after a function error: about 1 min, then 2 min, as in Lambda.
pub fn function_error_delay(n: u32, scale: f64) -> Duration {
    let base = 60_000u64 << n.saturating_sub(1).min(8);
    scaled(base, scale)
}

/// Delay after the `n`th (1-based) throttle or system error: 1 s doubling up to 5 min.
pub fn throttle_delay(n: u32, scale: f64) -> Duration {
    let base = (1000u64 << n.saturating_sub(1).min(20)).min(300_000);
    scaled(base, scale)
}

/// The maximum event age in real time.
pub fn max_age(seconds: u32, scale: f64) -> Duration {
    scaled(u64::from(seconds) * 1000, scale)
}

fn scaled(ms: u64, scale: f64) -> Duration {
    Duration::from_millis(((ms as f64) * scale).round().max(1.0) as u64)
}

/// What to do after a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this epoch ms.
    RetryAt(u64),
    /// Stop: retries exhausted.
    Exhausted,
    /// Stop: the event is past its maximum age.
    Expired,
}

/// After a function error: `function_errors` is the count including this one.
pub fn after_function_error(
    now: u64,
    function_errors: u32,
    max_retries: u32,
    expires_at: u64,
    scale: f64,
) -> Next {
    if function_errors > max_retries {
        return Next::Exhausted;
    }
    let at = now + function_error_delay(function_errors, scale).as_millis() as u64;
    if at >= expires_at {
        Next::Expired
    } else {
        Next::RetryAt(at)
    }
}

/// After a throttle or system error: `throttles` is the count including this one. Retries until
/// the maximum age; the last retry is at the expiry, where the event goes to failure handling.
pub fn after_throttle(now: u64, throttles: u32, expires_at: u64, scale: f64) -> Next {
    if now >= expires_at {
        return Next::Expired;
    }
    let at = now + throttle_delay(throttles, scale).as_millis() as u64;
    Next::RetryAt(at.min(expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_schedule_at_real_time() {
        assert_eq!(function_error_delay(1, 1.0), Duration::from_secs(60));
        assert_eq!(function_error_delay(2, 1.0), Duration::from_secs(120));
        assert_eq!(throttle_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(throttle_delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(throttle_delay(9, 1.0), Duration::from_secs(256));
        assert_eq!(throttle_delay(10, 1.0), Duration::from_secs(300));
        assert_eq!(throttle_delay(1000, 1.0), Duration::from_secs(300));
        assert_eq!(max_age(21_600, 1.0), Duration::from_secs(21_600));
    }

    #[test]
    fn the_scale_shrinks_everything() {
        assert_eq!(function_error_delay(1, 0.01), Duration::from_millis(600));
        assert_eq!(throttle_delay(1, 0.01), Duration::from_millis(10));
        assert_eq!(max_age(60, 0.01), Duration::from_millis(600));
        assert_eq!(throttle_delay(1, 0.0), Duration::from_millis(1));
    }

    #[test]
    fn retries_follow_maximum_retry_attempts() {
        let far = u64::MAX / 2;
        assert_eq!(
            after_function_error(0, 1, 2, far, 1.0),
            Next::RetryAt(60_000)
        );
        assert_eq!(
            after_function_error(0, 2, 2, far, 1.0),
            Next::RetryAt(120_000)
        );
        assert_eq!(after_function_error(0, 3, 2, far, 1.0), Next::Exhausted);
        assert_eq!(after_function_error(0, 1, 0, far, 1.0), Next::Exhausted);
        // A retry that would start after the maximum age does not happen.
        assert_eq!(after_function_error(0, 1, 2, 30_000, 1.0), Next::Expired);
    }

    #[test]
    fn throttles_back_off_until_the_maximum_age() {
        assert_eq!(after_throttle(0, 1, 10_000, 1.0), Next::RetryAt(1000));
        assert_eq!(after_throttle(0, 5, 10_000, 1.0), Next::RetryAt(10_000));
        assert_eq!(after_throttle(10_000, 6, 10_000, 1.0), Next::Expired);
    }
}
