//! Choosing a worker for an invocation. Pure: the registry supplies the figures (what the last
//! heartbeat said, corrected by what the controller has placed since).
//!
//! 1. Warm: an `Up` worker with an idle sandbox of the same function revision, one with an idle
//!    *provisioned* sandbox first (its init ran ahead of time), then the most free memory.
//! 2. Cold: a new sandbox starts on an `Up` worker below its bound of cold starts in flight,
//!    preferring a worker where the function's memory fits, then the one with the fewest sandboxes
//!    of this function (a function's sandboxes spread over the workers), then the most free memory.
//! 3. Every `Up` worker is at its cold-start bound: the caller waits for one to free up.

/// What placement needs to know about one worker, for one (function, revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub worker_id: &'a str,
    pub up: bool,
    /// Idle sandboxes of the function revision nobody has claimed since the last heartbeat.
    pub idle_warm: u32,
    /// Of those, provisioned ones (initialised ahead of any invocation).
    pub idle_provisioned: u32,
    /// Heartbeat figure minus the memory of sandboxes placed there since (may go negative).
    pub free_memory_mb: i64,
    /// Sandboxes of the function (any revision, any state) reported or placed since.
    pub function_sandboxes: u32,
    /// Cold starts placed on the worker that have not finished starting.
    pub cold_starts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Index of a worker with an idle warm sandbox of the revision.
    Warm(usize),
    /// Index of the worker where a new sandbox starts.
    Cold(usize),
    /// Workers are `Up`, but every one is at its bound of cold starts in flight.
    AtColdStartBound,
}

/// `None` when no candidate is `Up`. `cold_start_limit`: cold starts in flight per worker at
/// most; `memory_mb`: the function's. Ties go to the smallest worker id, so the choice is stable.
pub fn choose(
    candidates: &[Candidate<'_>],
    memory_mb: u32,
    cold_start_limit: u32,
) -> Option<Choice> {
    if !candidates.iter().any(|c| c.up) {
        return None;
    }
    let warm = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.up && c.idle_warm > 0)
        .max_by(|(_, a), (_, b)| {
            (a.idle_provisioned > 0)
                .cmp(&(b.idle_provisioned > 0))
                .then(a.free_memory_mb.cmp(&b.free_memory_mb))
                .then_with(|| b.worker_id.cmp(a.worker_id))
        })
        .map(|(i, _)| i);
    if let Some(i) = warm {
        return Some(Choice::Warm(i));
    }
    let fits = |c: &Candidate<'_>| c.free_memory_mb >= i64::from(memory_mb);
    let cold = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.up && c.cold_starts < cold_start_limit)
        .max_by(|(_, a), (_, b)| {
            fits(a)
                .cmp(&fits(b))
                .then(b.function_sandboxes.cmp(&a.function_sandboxes))
                .then(a.free_memory_mb.cmp(&b.free_memory_mb))
                .then_with(|| b.worker_id.cmp(a.worker_id))
        })
        .map(|(i, _)| i);
    Some(match cold {
        Some(i) => Choice::Cold(i),
        None => Choice::AtColdStartBound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(worker_id: &str, up: bool, idle_warm: u32, free_memory_mb: i64) -> Candidate<'_> {
        Candidate {
            worker_id,
            up,
            idle_warm,
            idle_provisioned: 0,
            free_memory_mb,
            function_sandboxes: 0,
            cold_starts: 0,
        }
    }

    #[test]
    fn prefers_an_idle_warm_sandbox_over_free_memory() {
        let cs = [
            c("a", true, 0, 8000),
            c("b", true, 1, 500),
            c("c", true, 0, 9000),
        ];
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Warm(1)));
    }

    #[test]
    fn prefers_an_idle_provisioned_sandbox_among_warm_ones() {
        let mut cs = [
            c("a", true, 2, 8000),
            c("b", true, 1, 500),
            c("c", true, 0, 9000),
        ];
        cs[1].idle_provisioned = 1;
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Warm(1)));
        cs[1].idle_provisioned = 0;
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Warm(0)));
    }

    #[test]
    fn else_the_most_free_memory() {
        let cs = [
            c("a", true, 0, 1000),
            c("b", true, 0, 3000),
            c("c", true, 0, 2000),
        ];
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Cold(1)));
        let tie = [c("b", true, 0, 1000), c("a", true, 0, 1000)];
        assert_eq!(choose(&tie, 128, 8), Some(Choice::Cold(1)));
    }

    #[test]
    fn cold_starts_spread_a_function_over_workers() {
        let mut cs = [c("a", true, 0, 8000), c("b", true, 0, 2000)];
        cs[0].function_sandboxes = 2;
        cs[1].function_sandboxes = 1;
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Cold(1)));
        // ... unless the function does not fit there.
        assert_eq!(choose(&cs, 4096, 8), Some(Choice::Cold(0)));
        cs[1].function_sandboxes = 2;
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Cold(0)));
    }

    #[test]
    fn cold_starts_are_bounded_per_worker() {
        let mut cs = [c("a", true, 0, 8000), c("b", true, 0, 100)];
        cs[0].cold_starts = 8;
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Cold(1)));
        cs[1].cold_starts = 8;
        assert_eq!(choose(&cs, 128, 8), Some(Choice::AtColdStartBound));
        // A warm sandbox needs no cold start.
        cs[0].idle_warm = 1;
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Warm(0)));
    }

    #[test]
    fn skips_down_workers() {
        let cs = [
            c("a", false, 3, 9000),
            c("b", true, 0, 100),
            c("c", false, 0, 9999),
        ];
        assert_eq!(choose(&cs, 128, 8), Some(Choice::Cold(1)));
        assert_eq!(choose(&[c("a", false, 1, 1)], 128, 8), None);
        assert_eq!(choose(&[], 128, 8), None);
    }
}
