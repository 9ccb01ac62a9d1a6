//! Concurrency accounting (Lambda's rules), in memory: invocations in flight per function and in
//! total, sync invocations and async deliveries alike.
//!
//! - A function with a reservation `R` runs at most `R` invocations at once (`R = 0`: every
//!   invocation is throttled); its `R` come out of the cluster-wide limit whether used or not.
//! - Functions without one share the unreserved pool: `limit - sum(reservations)`.
//! - A reservation is refused when it would leave less than `unreserved_min` unreserved.
//!
//! [`Limiter::acquire`] hands out a [`Permit`] that gives its slot back when dropped, so a slot is
//! never leaked by an early return. Reservations are the store's (`SettingsStore`); the limiter
//! keeps a copy, loaded at start and updated on every put, delete and function delete.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Default cluster-wide limit (`--concurrency-limit`), as Lambda's default account limit.
pub const DEFAULT_LIMIT: u32 = 1000;
/// Default share of the limit no reservation may take (`--unreserved-concurrency-min`).
pub const DEFAULT_UNRESERVED_MIN: u32 = 100;
/// Default longest wait of an invocation for a cold-start slot (`--placement-wait-ms`).
pub const DEFAULT_PLACEMENT_WAIT: Duration = Duration::from_secs(10);

/// The controller's concurrency and placement bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyConfig {
    /// Invocations in flight cluster-wide at most.
    pub limit: u32,
    /// What reservations must leave unreserved (clamped below `limit`).
    pub unreserved_min: u32,
    /// Cold starts in flight per worker at most (see `registry`).
    pub cold_starts_per_worker: u32,
    /// How long an invocation waits when every worker is at that bound, before it is throttled.
    pub placement_wait: Duration,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            limit: DEFAULT_LIMIT,
            unreserved_min: DEFAULT_UNRESERVED_MIN,
            cold_starts_per_worker: crate::registry::DEFAULT_COLD_STARTS_PER_WORKER,
            placement_wait: DEFAULT_PLACEMENT_WAIT,
        }
    }
}

/// Why an invocation was throttled: Lambda's `Reason` of a `TooManyRequestsException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// The function is at its reserved concurrency.
    ReservedFunctionConcurrentInvocationLimitExceeded,
    /// The unreserved pool (the cluster-wide limit minus every reservation) is exhausted.
    ConcurrentInvocationLimitExceeded,
    /// Sandboxes cannot be created fast enough: every worker is at its bound of cold starts in
    /// flight (the burst scaling limit).
    FunctionInvocationRateLimitExceeded,
}

impl ThrottleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
            ThrottleReason::ConcurrentInvocationLimitExceeded => {
                "ConcurrentInvocationLimitExceeded"
            }
            ThrottleReason::FunctionInvocationRateLimitExceeded => {
                "FunctionInvocationRateLimitExceeded"
            }
        }
    }
}

impl std::fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConcurrencyError {
    /// An invocation over a limit. The message starts with the reason.
    #[error("{reason}: {detail}")]
    Throttled {
        reason: ThrottleReason,
        detail: String,
    },
    #[error(
        "reserved concurrency {requested} for function `{function}` would leave {left} of the \
         concurrency limit {limit} unreserved (other functions reserve {others}); at least \
         {minimum} must stay unreserved: ask for at most {max}"
    )]
    ReservationTooLarge {
        function: String,
        requested: u32,
        limit: u32,
        others: u32,
        left: u32,
        minimum: u32,
        max: u32,
    },
}

/// What the limiter was configured with and what it counts now (`GetAccountSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountFigures {
    pub limit: u32,
    /// `limit - sum(reservations)` (0 when the reservations exceed a lowered limit).
    pub unreserved: u32,
    pub in_flight: u32,
}

#[derive(Debug, Default)]
struct State {
    reservations: HashMap<String, u32>,
    /// In flight per function, whichever pool the permits came from.
    by_function: HashMap<String, u32>,
    /// Permits taken from the unreserved pool.
    unreserved_in_flight: u32,
    total_in_flight: u32,
}

impl State {
    fn reserved_total(&self) -> u64 {
        self.reservations.values().map(|&r| u64::from(r)).sum()
    }
}

#[derive(Debug)]
struct Inner {
    limit: u32,
    unreserved_min: u32,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unreserved_pool(&self, st: &State) -> u32 {
        u64::from(self.limit).saturating_sub(st.reserved_total()) as u32
    }
}

/// The concurrency limiter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

/// One invocation's slot; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    function: String,
    /// Taken from the unreserved pool (else from the function's reservation).
    unreserved: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        if let Some(n) = st.by_function.get_mut(&self.function) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.by_function.remove(&self.function);
            }
        }
        if self.unreserved {
            st.unreserved_in_flight = st.unreserved_in_flight.saturating_sub(1);
        }
        st.total_in_flight = st.total_in_flight.saturating_sub(1);
    }
}

impl Limiter {
    /// `unreserved_min` is clamped below `limit` (a limit of 1 keeps 0 unreserved at least).
    pub fn new(limit: u32, unreserved_min: u32) -> Limiter {
        Limiter {
            inner: Arc::new(Inner {
                limit,
                unreserved_min: unreserved_min.min(limit.saturating_sub(1)),
                state: Mutex::default(),
            }),
        }
    }

    pub fn limit(&self) -> u32 {
        self.inner.limit
    }

    pub fn unreserved_min(&self) -> u32 {
        self.inner.unreserved_min
    }

    /// Replaces every reservation (at start, from the store). Not checked against the minimum:
    /// what is stored was accepted under the configuration of its time.
    pub fn load(&self, reservations: impl IntoIterator<Item = (String, u32)>) {
        let mut st = self.inner.lock();
        st.reservations = reservations.into_iter().collect();
    }

    /// The function's reservation, as the limiter enforces it.
    pub fn reservation(&self, function: &str) -> Option<u32> {
        self.inner.lock().reservations.get(function).copied()
    }

    /// Sets (`Some`) or removes (`None`) a reservation; a new or larger one must leave at least
    /// the minimum unreserved. Returns the previous value, for [`Limiter::restore`] when storing
    /// the change fails.
    pub fn set_reservation(
        &self,
        function: &str,
        reserved: Option<u32>,
    ) -> Result<Option<u32>, ConcurrencyError> {
        let mut st = self.inner.lock();
        let previous = st.reservations.get(function).copied();
        let Some(requested) = reserved else {
            st.reservations.remove(function);
            return Ok(previous);
        };
        let others = st.reserved_total() - u64::from(previous.unwrap_or(0));
        let limit = u64::from(self.inner.limit);
        let minimum = u64::from(self.inner.unreserved_min);
        let left = limit.saturating_sub(others + u64::from(requested));
        let shrinking = previous.is_some_and(|p| requested <= p);
        if !shrinking && (others + u64::from(requested) > limit || left < minimum) {
            return Err(ConcurrencyError::ReservationTooLarge {
                function: function.to_string(),
                requested,
                limit: self.inner.limit,
                others: others.min(u64::from(u32::MAX)) as u32,
                left: left as u32,
                minimum: self.inner.unreserved_min,
                max: limit.saturating_sub(others + minimum) as u32,
            });
        }
        st.reservations.insert(function.to_string(), requested);
        Ok(previous)
    }

    /// Puts back the value [`Limiter::set_reservation`] replaced.
    pub fn restore(&self, function: &str, previous: Option<u32>) {
        let mut st = self.inner.lock();
        match previous {
            Some(r) => st.reservations.insert(function.to_string(), r),
            None => st.reservations.remove(function),
        };
    }

    /// The function is gone: its reservation returns to the unreserved pool.
    pub fn forget(&self, function: &str) {
        self.inner.lock().reservations.remove(function);
    }

    /// A slot for one invocation of `function`, or the reason it is throttled.
    pub fn acquire(&self, function: &str) -> Result<Permit, ConcurrencyError> {
        let mut st = self.inner.lock();
        let running = st.by_function.get(function).copied().unwrap_or(0);
        let unreserved = match st.reservations.get(function).copied() {
            Some(reserved) => {
                if running >= reserved {
                    return Err(ConcurrencyError::Throttled {
                        reason: ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded,
                        detail: format!(
                            "function `{function}` is at its reserved concurrency \
                             ({running} in flight, {reserved} reserved)"
                        ),
                    });
                }
                false
            }
            None => {
                let pool = self.inner.unreserved_pool(&st);
                if st.unreserved_in_flight >= pool {
                    return Err(ConcurrencyError::Throttled {
                        reason: ThrottleReason::ConcurrentInvocationLimitExceeded,
                        detail: format!(
                            "the unreserved concurrency ({pool} of the limit {}) is in use",
                            self.inner.limit
                        ),
                    });
                }
                true
            }
        };
        *st.by_function.entry(function.to_string()).or_insert(0) += 1;
        if unreserved {
            st.unreserved_in_flight += 1;
        }
        st.total_in_flight += 1;
        Ok(Permit {
            inner: Arc::clone(&self.inner),
            function: function.to_string(),
            unreserved,
        })
    }

    /// Limit, unreserved share and invocations in flight now.
    pub fn figures(&self) -> AccountFigures {
        let st = self.inner.lock();
        AccountFigures {
            limit: self.inner.limit,
            unreserved: self.inner.unreserved_pool(&st),
            in_flight: st.total_in_flight,
        }
    }

    /// Invocations of `function` in flight now.
    pub fn in_flight(&self, function: &str) -> u32 {
        self.inner
            .lock()
            .by_function
            .get(function)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<Permit, ConcurrencyError>) -> ThrottleReason {
        match r {
            Err(ConcurrencyError::Throttled { reason, .. }) => reason,
            other => panic!("expected a throttle, got {other:?}"),
        }
    }

    #[test]
    fn a_reservation_caps_its_function() {
        let l = Limiter::new(1000, 100);
        l.set_reservation("f", Some(2)).unwrap();
        let a = l.acquire("f").unwrap();
        let b = l.acquire("f").unwrap();
        assert_eq!(
            reason(l.acquire("f")),
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
        );
        // Other functions are not affected.
        let _g = l.acquire("g").unwrap();
        assert_eq!(l.in_flight("f"), 2);
        drop(a);
        let c = l.acquire("f").unwrap();
        drop((b, c));
        assert_eq!(l.figures().in_flight, 1);
    }

    #[test]
    fn zero_reserved_throttles_everything() {
        let l = Limiter::new(10, 1);
        l.set_reservation("off", Some(0)).unwrap();
        let err = l.acquire("off").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ReservedFunctionConcurrentInvocationLimitExceeded: "),
            "{err}"
        );
        l.set_reservation("off", None).unwrap();
        assert!(l.acquire("off").is_ok());
    }

    #[test]
    fn unreserved_functions_share_what_reservations_leave() {
        let l = Limiter::new(5, 1);
        l.set_reservation("r", Some(3)).unwrap();
        assert_eq!(l.figures().unreserved, 2);
        let a = l.acquire("x").unwrap();
        let b = l.acquire("y").unwrap();
        let err = l.acquire("x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ConcurrentInvocationLimitExceeded: "),
            "{err}"
        );
        // The reserved function still has its own three.
        let held: Vec<Permit> = (0..3).map(|_| l.acquire("r").unwrap()).collect();
        assert_eq!(l.figures().in_flight, 5);
        drop(a);
        let _c = l.acquire("y").unwrap();
        drop((b, held));
        assert_eq!(l.figures().in_flight, 1);
    }

    #[test]
    fn reservations_must_leave_the_minimum_unreserved() {
        let l = Limiter::new(100, 20);
        l.set_reservation("a", Some(50)).unwrap();
        let err = l.set_reservation("b", Some(31)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("reserved concurrency 31") && msg.contains("at least 20"),
            "{msg}"
        );
        assert!(msg.contains("ask for at most 30"), "{msg}");
        assert_eq!(l.reservation("b"), None, "nothing changed");
        l.set_reservation("b", Some(30)).unwrap();
        assert_eq!(l.figures().unreserved, 20);
        // Replacing a reservation counts it once; shrinking is always allowed.
        l.set_reservation("a", Some(50)).unwrap();
        l.set_reservation("a", Some(10)).unwrap();
        assert_eq!(l.figures().unreserved, 60);
        let previous = l.set_reservation("a", Some(5)).unwrap();
        l.restore("a", previous);
        assert_eq!(l.reservation("a"), Some(10));
        l.forget("a");
        assert_eq!(l.figures().unreserved, 70);
    }

    #[test]
    fn the_minimum_is_clamped_below_the_limit() {
        let l = Limiter::new(2, 100);
        assert_eq!(l.unreserved_min(), 1);
        l.set_reservation("a", Some(1)).unwrap();
        assert!(l.set_reservation("b", Some(1)).is_err());
    }

    #[test]
    fn a_permit_goes_back_to_the_pool_it_came_from() {
        let l = Limiter::new(3, 1);
        // Taken from the unreserved pool, then the function gets a reservation.
        let p = l.acquire("f").unwrap();
        l.set_reservation("f", Some(1)).unwrap();
        assert_eq!(
            reason(l.acquire("f")),
            ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded
        );
        assert_eq!(l.figures().unreserved, 2);
        let _g = l.acquire("g").unwrap();
        drop(p);
        // Its release freed the unreserved slot, not one of the reservation.
        let _h = l.acquire("h").unwrap();
        let _f = l.acquire("f").unwrap();
        assert_eq!(l.figures().in_flight, 3);
    }

    #[test]
    fn loaded_reservations_are_enforced() {
        let l = Limiter::new(10, 2);
        l.load([("a".to_string(), 0), ("b".to_string(), 4)]);
        assert_eq!(l.reservation("b"), Some(4));
        assert!(l.acquire("a").is_err());
        assert_eq!(l.figures().unreserved, 6);
    }
}
