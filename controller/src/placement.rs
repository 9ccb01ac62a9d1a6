//! Choosing a worker for an invocation: an `Up` worker with an idle warm sandbox of the same function
//! revision first, else the `Up` worker with the most free memory. Pure: the registry supplies the
//! figures (what the last heartbeat said, corrected by what the controller has placed since).

/// What placement needs to know about one worker, for one (function, revision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub worker_id: &'a str,
    pub up: bool,
    /// Idle sandboxes of the function revision nobody has claimed since the last heartbeat.
    pub idle_warm: u32,
    /// Heartbeat figure minus the memory of sandboxes placed there since (may go negative).
    pub free_memory_mb: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Index of a worker with an idle warm sandbox of the revision.
    Warm(usize),
    /// Index of the worker with the most free memory: a new sandbox starts there.
    Cold(usize),
}

impl Choice {
    pub fn index(self) -> usize {
        match self {
            Choice::Warm(i) | Choice::Cold(i) => i,
        }
    }
}

/// `None` when no candidate is `Up`. Ties go to the smallest worker id, so the choice is stable.
pub fn choose(candidates: &[Candidate<'_>]) -> Option<Choice> {
    let best = |warm_only: bool| {
        candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.up && (!warm_only || c.idle_warm > 0))
            .max_by(|(_, a), (_, b)| {
                a.free_memory_mb
                    .cmp(&b.free_memory_mb)
                    .then_with(|| b.worker_id.cmp(a.worker_id))
            })
            .map(|(i, _)| i)
    };
    best(true)
        .map(Choice::Warm)
        .or_else(|| best(false).map(Choice::Cold))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(worker_id: &str, up: bool, idle_warm: u32, free_memory_mb: i64) -> Candidate<'_> {
        Candidate {
            worker_id,
            up,
            idle_warm,
            free_memory_mb,
        }
    }

    #[test]
    fn prefers_an_idle_warm_sandbox_over_free_memory() {
        let cs = [
            c("a", true, 0, 8000),
            c("b", true, 1, 500),
            c("c", true, 0, 9000),
        ];
        assert_eq!(choose(&cs), Some(Choice::Warm(1)));
    }

    #[test]
    fn else_the_most_free_memory() {
        let cs = [
            c("a", true, 0, 1000),
            c("b", true, 0, 3000),
            c("c", true, 0, 2000),
        ];
        assert_eq!(choose(&cs), Some(Choice::Cold(1)));
        let tie = [c("b", true, 0, 1000), c("a", true, 0, 1000)];
        assert_eq!(choose(&tie), Some(Choice::Cold(1)));
    }

    #[test]
    fn skips_down_workers() {
        let cs = [
            c("a", false, 3, 9000),
            c("b", true, 0, 100),
            c("c", false, 0, 9999),
        ];
        assert_eq!(choose(&cs), Some(Choice::Cold(1)));
        assert_eq!(choose(&[c("a", false, 1, 1)]), None);
        assert_eq!(choose(&[]), None);
    }
}
