//! The free list of sandbox cgroups: a destroyed sandbox's cgroup that is provably empty is kept
//! (bounded, for a short while) and the next sandbox under the same parent takes it instead of
//! creating one, which saves the mkdir and rmdir in every controller hierarchy and the kernel's
//! asynchronous teardown of each memory cgroup.
//!
//! What is reused when (cgroup v1 only; v2 never, see [`super::Cgroup::reusable`]):
//! - a cgroup goes on the list when its sandbox is destroyed, nobody else holds it (the caller
//!   proves it owns the only reference), no task is left in any hierarchy (`pids.current` is 0,
//!   so not even a zombie remains) and at most [`MAX_LEFTOVER_BYTES`] of memory (page cache) is
//!   still charged to it; it is renamed `free-N` (so the sandbox's cgroup is gone once destroyed,
//!   as without reuse); else it is removed as before;
//! - the next sandbox takes the most recently freed one: checked empty again, renamed to the new
//!   sandbox's id in every hierarchy, thawed, its counters reset or baselined (peak memory, OOM
//!   kills) and its limits rewritten (`v1::CgroupV1::adopt`); on any failure it is removed and a
//!   fresh cgroup is created;
//! - an entry unused for [`FREE_TTL`] is removed by a janitor thread, so that an idle worker has no
//!   cgroup but its sandboxes'; worker shutdown removes the rest ([`drain`]) and a restarted
//!   worker's stale-cgroup cleanup removes whatever a crashed one left.
//!
//! The bound is `LAMINA_CGROUP_REUSE` (default [`DEFAULT_CAPACITY`] per parent, 0 turns reuse off)
//! or [`set_capacity`].
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use super::{mode, Cgroup, CgroupError, Limits, Mode};

/// Free cgroups kept per parent unless `LAMINA_CGROUP_REUSE` says otherwise.
pub const DEFAULT_CAPACITY: usize = 16;
/// A free cgroup unused this long is removed.
pub const FREE_TTL: Duration = Duration::from_secs(2);
/// More memory than this still charged to an empty cgroup (page cache of its last user, or shared
/// memory whose namespace is still being torn down) and it is removed instead of reused.
pub const MAX_LEFTOVER_BYTES: u64 = 16 << 20;
/// The environment variable with the bound (free cgroups per parent; 0 = no reuse).
pub const CAPACITY_ENV: &str = "LAMINA_CGROUP_REUSE";

/// How often each path was taken, since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReuseStats {
    /// Sandboxes that got a free cgroup.
    pub taken: u64,
    /// Sandboxes that got a new cgroup (mkdir).
    pub created: u64,
    /// Retired cgroups kept on the free list.
    pub kept: u64,
    /// Retired cgroups removed (reuse off, list full or closed, not the sole reference, not
    /// empty, or a failed rename).
    pub removed: u64,
}

static TAKEN: AtomicU64 = AtomicU64::new(0);
static CREATED: AtomicU64 = AtomicU64::new(0);
static KEPT: AtomicU64 = AtomicU64::new(0);
static REMOVED: AtomicU64 = AtomicU64::new(0);

/// The counts so far.
pub fn stats() -> ReuseStats {
    ReuseStats {
        taken: TAKEN.load(Ordering::Relaxed),
        created: CREATED.load(Ordering::Relaxed),
        kept: KEPT.load(Ordering::Relaxed),
        removed: REMOVED.load(Ordering::Relaxed),
    }
}

const UNSET: usize = usize::MAX;
static CAPACITY: AtomicUsize = AtomicUsize::new(UNSET);

/// Free cgroups kept per parent (0: reuse is off).
pub fn capacity() -> usize {
    let c = CAPACITY.load(Ordering::Acquire);
    if c != UNSET {
        return c;
    }
    let from_env = match std::env::var(CAPACITY_ENV) {
        Err(_) => DEFAULT_CAPACITY,
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(
                value = %v,
                "{CAPACITY_ENV} must be a number of free cgroups (0 turns reuse off): using {DEFAULT_CAPACITY}"
            );
            DEFAULT_CAPACITY
        }),
    };
    // A concurrent set_capacity wins over the environment.
    match CAPACITY.compare_exchange(UNSET, from_env, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => from_env,
        Err(set) => set,
    }
}

/// Sets the bound (0 turns reuse off); free cgroups above it are removed.
pub fn set_capacity(n: usize) {
    CAPACITY.store(n, Ordering::Release);
    let excess: Vec<String> = {
        let mut lists = lists();
        lists
            .values_mut()
            .flat_map(|l| {
                let keep = l.free.len().min(n);
                l.free.drain(..l.free.len() - keep).collect::<Vec<_>>()
            })
            .map(|f| f.relative)
            .collect()
    };
    remove_all(&excess);
}

struct Free {
    relative: String,
    since: Instant,
}

#[derive(Default)]
struct ParentList {
    /// Oldest first.
    free: Vec<Free>,
    /// Set at shutdown ([`drain`]): nothing is kept any more.
    closed: bool,
}

fn lists() -> MutexGuard<'static, HashMap<String, ParentList>> {
    static LISTS: LazyLock<Mutex<HashMap<String, ParentList>>> = LazyLock::new(Default::default);
    LISTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The parent path of a sandbox cgroup (`lamina/w1/sb-x` -> `lamina/w1`).
fn parent_of(relative: &str) -> &str {
    relative.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Takes a free cgroup of `parent` and makes it `parent/name` with `limits`, or creates one.
pub fn take_or_create(
    parent: &str,
    name: &str,
    limits: &Limits,
) -> Result<Box<dyn Cgroup>, CgroupError> {
    let relative = format!("{parent}/{name}");
    if let Mode::V1(mounts) = mode()? {
        while let Some(old) = pop(parent) {
            match super::v1::CgroupV1::adopt(mounts, &old, &relative, limits) {
                Ok(cg) => {
                    TAKEN.fetch_add(1, Ordering::Relaxed);
                    return Ok(Box::new(cg));
                }
                Err(e) => {
                    tracing::warn!(cgroup = %old, error = %e, "reusing a free cgroup failed: removing it");
                    super::remove_stale(&old);
                    super::remove_stale(&relative);
                }
            }
        }
    }
    CREATED.fetch_add(1, Ordering::Relaxed);
    super::create(&relative, limits)
}

fn pop(parent: &str) -> Option<String> {
    let mut lists = lists();
    let list = lists.get_mut(parent)?;
    list.free.pop().map(|f| f.relative)
}

/// The end of a sandbox's cgroup, whose processes were killed: kept for the next sandbox when it
/// is reusable and the caller held the only reference, else removed. A kept cgroup is renamed
/// `free-N` at once: the sandbox's own cgroup is gone when its destroy returns, as without reuse.
pub fn retire(cgroup: Arc<dyn Cgroup>) -> Result<(), CgroupError> {
    let (kept, result) = keep_or_remove(cgroup);
    let counter = if kept { &KEPT } else { &REMOVED };
    counter.fetch_add(1, Ordering::Relaxed);
    result
}

/// `retire`: true when kept.
fn keep_or_remove(mut cgroup: Arc<dyn Cgroup>) -> (bool, Result<(), CgroupError>) {
    // Only the sole owner may hand a cgroup on: no clone can reach the next sandbox's processes.
    let sole = Arc::get_mut(&mut cgroup).is_some();
    let mounts = match mode() {
        Ok(Mode::V1(mounts)) => mounts,
        Ok(Mode::V2(_)) => return (false, cgroup.remove()),
        Err(e) => return (false, Err(e)),
    };
    if !sole || capacity() == 0 || !cgroup.reusable() {
        return (false, cgroup.remove());
    }
    let relative = cgroup.relative_path().to_string();
    let parent = parent_of(&relative).to_string();
    {
        let lists = lists();
        let full = lists
            .get(&parent)
            .is_some_and(|l| l.closed || l.free.len() >= capacity());
        if full {
            drop(lists);
            return (false, cgroup.remove());
        }
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let parked = format!("{parent}/free-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    if let Err(e) = super::v1::rename(mounts, &relative, &parked) {
        tracing::warn!(cgroup = %relative, error = %e, "parking a free cgroup failed: removing it");
        super::remove_stale(&parked);
        return (false, cgroup.remove());
    }
    let kept = {
        let mut lists = lists();
        let list = lists.entry(parent).or_default();
        let keep = !list.closed && list.free.len() < capacity();
        if keep {
            list.free.push(Free {
                relative: parked.clone(),
                since: Instant::now(),
            });
        }
        keep
    };
    if !kept {
        // Closed or filled meanwhile.
        return (false, super::remove_group(&parked));
    }
    start_janitor();
    (true, Ok(()))
}

/// Removes every free cgroup of `parent` and keeps none from now on (worker shutdown).
pub fn drain(parent: &str) {
    let free: Vec<String> = {
        let mut lists = lists();
        let list = lists.entry(parent.to_string()).or_default();
        list.closed = true;
        list.free.drain(..).map(|f| f.relative).collect()
    };
    remove_all(&free);
}

/// How many free cgroups `parent` has now.
pub fn free_count(parent: &str) -> usize {
    lists().get(parent).map_or(0, |l| l.free.len())
}

fn remove_all(relatives: &[String]) {
    for relative in relatives {
        if let Err(e) = super::remove_group(relative) {
            tracing::warn!(cgroup = %relative, error = %e, "removing a free cgroup failed");
        }
    }
}

/// Removes free cgroups unused for [`FREE_TTL`], every half of it, on a thread of its own.
fn start_janitor() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("cgroup-free-list".into())
            .spawn(|| loop {
                std::thread::sleep(FREE_TTL / 2);
                let expired: Vec<String> = {
                    let mut lists = lists();
                    let mut out = Vec::new();
                    for list in lists.values_mut() {
                        let (old, young): (Vec<Free>, Vec<Free>) = list
                            .free
                            .drain(..)
                            .partition(|f| f.since.elapsed() >= FREE_TTL);
                        list.free = young;
                        out.extend(old.into_iter().map(|f| f.relative));
                    }
                    out
                };
                remove_all(&expired);
            });
        if let Err(e) = spawned {
            // Free cgroups then stay until they are taken or the worker shuts down.
            tracing::warn!(error = %e, "cannot start the free cgroup janitor");
        }
    });
}

#[cfg(test)]
mod tests {
    //! Real cgroups, as root (the machine's mode decides which contract is checked: v1 reuses,
    //! v2 never does).
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    fn need_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (it creates real cgroups)"
        );
    }

    fn is_v1() -> bool {
        matches!(mode().expect("a cgroup hierarchy"), Mode::V1(_))
    }

    /// `controller`'s directory of the cgroup `relative` (v1 layout of this machine kind).
    fn v1_dir(controller: &str, relative: &str) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup")
            .join(controller)
            .join(relative)
    }

    fn read(controller: &str, relative: &str, file: &str) -> String {
        let path = v1_dir(controller, relative).join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// `sh -c script` inside `cg`: held on its stdin until it is attached.
    fn run_in(cg: &dyn Cgroup, script: &str) -> Child {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _; {script}"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        cg.add_process(child.id() as i32).expect("attach");
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        child
    }

    fn finish(parent: &str) {
        drain(parent);
        assert_eq!(free_count(parent), 0);
        super::super::remove_group(parent).expect("remove the test parent");
    }

    #[test]
    fn a_reused_cgroup_shows_nothing_of_its_last_sandbox() {
        need_root();
        let parent = format!("lamina-test-reuse-{}", std::process::id());
        let a: Arc<dyn Cgroup> = take_or_create(&parent, "a", &Limits::for_function(64, 16))
            .unwrap()
            .into();
        if !is_v1() {
            assert!(!a.reusable(), "v2 cgroups are never reused");
            retire(a).unwrap();
            assert_eq!(free_count(&parent), 0);
            return finish(&parent);
        }
        // The last sandbox: OOM-killed at 64 MB, its cgroup left frozen.
        let mut hog = run_in(&*a, "exec python3.11 -c 'b = bytearray(200 << 20)'");
        assert!(!hog.wait().unwrap().success(), "the hog must be killed");
        assert_eq!(a.oom_kills(), 1);
        assert!(
            a.memory_peak_bytes() > 32 << 20,
            "{}",
            a.memory_peak_bytes()
        );
        a.kill_all().unwrap();
        a.freeze().unwrap();
        let old = a.relative_path().to_string();
        retire(a).unwrap();
        assert_eq!(free_count(&parent), 1, "an empty cgroup is kept");
        assert!(!v1_dir("memory", &old).exists(), "renamed away from {old}");

        // The next sandbox takes it: its own name, limits, no OOM kill, no peak, thawed.
        let limits = Limits::for_function(256, 32);
        let b = take_or_create(&parent, "b", &limits).unwrap();
        assert_eq!(free_count(&parent), 0, "taken, not created");
        let rel = format!("{parent}/b");
        assert_eq!(b.relative_path(), rel);
        for controller in ["memory", "cpu", "pids", "freezer"] {
            assert!(v1_dir(controller, &rel).is_dir(), "{controller}");
        }
        assert_eq!(b.oom_kills(), 0, "the old sandbox's OOM kill shows");
        assert!(
            b.memory_peak_bytes() < 8 << 20,
            "the old sandbox's peak shows: {}",
            b.memory_peak_bytes()
        );
        assert_eq!(
            read("memory", &rel, "memory.limit_in_bytes"),
            (256u64 << 20).to_string()
        );
        assert_eq!(read("pids", &rel, "pids.max"), "32");
        assert_eq!(
            read("cpu", &rel, "cpu.cfs_quota_us"),
            limits.cpu_quota_us.to_string()
        );
        assert_eq!(read("freezer", &rel, "freezer.state"), "THAWED");
        // What it uses itself is counted.
        let mut user = run_in(&*b, "exec python3.11 -c 'b = bytearray(40 << 20)'");
        assert!(user.wait().unwrap().success());
        assert!(
            b.memory_peak_bytes() >= 40 << 20,
            "{}",
            b.memory_peak_bytes()
        );
        assert_eq!(b.oom_kills(), 0);
        b.kill_all().unwrap();
        retire(Arc::from(b)).unwrap();
        assert_eq!(free_count(&parent), 1);
        finish(&parent);
        assert!(!v1_dir("memory", &parent).exists(), "free cgroups left");
    }

    #[test]
    fn a_cgroup_with_a_task_left_is_never_reused() {
        need_root();
        let parent = format!("lamina-test-reuse-busy-{}", std::process::id());
        let c: Arc<dyn Cgroup> = take_or_create(&parent, "c", &Limits::for_function(128, 16))
            .unwrap()
            .into();
        let mut sleeper = run_in(&*c, "exec sleep 30");
        assert!(!c.reusable(), "a live process");
        // Killed but not reaped: a zombie still counts.
        sleeper.kill().unwrap();
        for _ in 0..1000 {
            if c.pids().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(c.pids().is_empty(), "the sleeper did not die");
        if is_v1() {
            assert_eq!(read("pids", c.relative_path(), "pids.current"), "1");
        }
        assert!(!c.reusable(), "a zombie");
        sleeper.wait().unwrap();
        assert_eq!(c.reusable(), is_v1(), "reaped: empty (v1 only)");

        // Retired with a process inside: removal fails, nothing is kept.
        let mut sleeper = run_in(&*c, "exec sleep 30");
        assert!(retire(c.clone()).is_err(), "a busy cgroup cannot go");
        assert_eq!(free_count(&parent), 0);
        // Empty but still referenced elsewhere: removed, not kept.
        c.kill_all().unwrap();
        sleeper.wait().unwrap();
        let other = c.clone();
        retire(c).unwrap();
        assert_eq!(free_count(&parent), 0);
        assert!(!v1_dir("pids", other.relative_path()).exists() || !is_v1());
        finish(&parent);
    }

    #[test]
    fn the_free_list_is_bounded_expires_and_is_drained() {
        need_root();
        let parent = format!("lamina-test-reuse-bound-{}", std::process::id());
        let cap = capacity();
        let n = if is_v1() { cap + 2 } else { 2 };
        let cgroups: Vec<Box<dyn Cgroup>> = (0..n)
            .map(|i| take_or_create(&parent, &format!("g{i}"), &Limits::for_function(128, 8)))
            .collect::<Result<_, _>>()
            .unwrap();
        for cg in cgroups {
            retire(Arc::from(cg)).unwrap();
        }
        let kept = if is_v1() { cap } else { 0 };
        assert_eq!(free_count(&parent), kept, "bounded by {cap}");
        let children = |p: &str| {
            std::fs::read_dir(v1_dir("freezer", p))
                .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
                .unwrap_or(0)
        };
        if is_v1() {
            assert_eq!(children(&parent), kept, "the rest are removed");
            // Unused free cgroups are removed after FREE_TTL.
            for _ in 0..300 {
                if free_count(&parent) == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert_eq!(free_count(&parent), 0, "not expired within 30 s");
            assert_eq!(children(&parent), 0);
        }
        // Drained (worker shutdown): nothing is kept from then on.
        let g = take_or_create(&parent, "late", &Limits::for_function(128, 8)).unwrap();
        drain(&parent);
        retire(Arc::from(g)).unwrap();
        assert_eq!(free_count(&parent), 0);
        finish(&parent);
    }
}
