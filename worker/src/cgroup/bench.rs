//! What the cgroup layer costs, measured on real cgroups as root (`#[ignore]`d: run with
//! `cargo test -p lamina-worker --lib cgroup::bench -- --ignored --nocapture --test-threads 1`).
//! The figures in `docs/ARCHITECTURE.md` (worker, `cgroup/`) come from here.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reuse::set_capacity;
use super::{create, mode, retire, take_or_create, Cgroup, Limits};

const CYCLES: u32 = 300;
const FREEZES: u32 = 1000;

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this bench needs root (it creates real cgroups)"
    );
}

fn per_second(n: u32, took: Duration) -> f64 {
    f64::from(n) / took.as_secs_f64()
}

/// Created with its limits written, then removed: what a sandbox's cgroup costs without reuse.
#[test]
#[ignore = "a benchmark: run it by name with --ignored --nocapture"]
fn bench_create_limit_remove() {
    need_root();
    let parent = format!("lamina-bench-cgroup-{}", std::process::id());
    let limits = Limits::for_function(128, 64);
    let start = Instant::now();
    for i in 0..CYCLES {
        let cg = create(&format!("{parent}/cg-{i}"), &limits).expect("create");
        cg.remove().expect("remove");
    }
    let took = start.elapsed();
    println!(
        "cgroup {}: created + limited + removed: {:.0}/s ({:.0} us each)",
        mode().unwrap().name(),
        per_second(CYCLES, took),
        took.as_secs_f64() * 1e6 / f64::from(CYCLES)
    );
    // Through the free list (v1): taken or created, then retired.
    set_capacity(16);
    let start = Instant::now();
    for i in 0..CYCLES {
        let cg: Arc<dyn Cgroup> = take_or_create(&parent, &format!("r-{i}"), &limits)
            .expect("take or create")
            .into();
        retire(cg).expect("retire");
    }
    let took = start.elapsed();
    println!(
        "cgroup {}: taken from the free list + limited + retired: {:.0}/s ({:.0} us each)",
        mode().unwrap().name(),
        per_second(CYCLES, took),
        took.as_secs_f64() * 1e6 / f64::from(CYCLES)
    );
    super::reuse::drain(&parent);
    super::remove_group(&parent).expect("remove the bench parent");
}

/// A cgroup whose process was just killed, removed by Lamina's polled rmdir (`Cgroup::remove`) or
/// by the crate's `delete` (which sleeps 10 ms before its first retry): v1 only, where the two
/// differ.
#[test]
#[ignore = "a benchmark: run it by name with --ignored --nocapture"]
fn bench_kill_remove() {
    need_root();
    let super::Mode::V1(_) = mode().unwrap() else {
        return;
    };
    let parent = format!("lamina-bench-remove-{}", std::process::id());
    let names: Vec<String> = ["memory", "cpu", "pids", "freezer"]
        .map(String::from)
        .to_vec();
    for crate_delete in [false, true] {
        let mut took = Duration::ZERO;
        let n = 40;
        for i in 0..n {
            let rel = format!("{parent}/k-{i}");
            let cg = create(&rel, &Limits::for_function(128, 64)).expect("create");
            let mut child = std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("spawn sleep");
            cg.add_process(child.id() as i32).expect("attach");
            cg.kill_all().expect("kill");
            child.wait().expect("reap sleep");
            let start = Instant::now();
            if crate_delete {
                cgroups_rs::Cgroup::load_with_specified_controllers(
                    cgroups_rs::hierarchies::auto(),
                    &rel,
                    names.clone(),
                )
                .delete()
                .expect("crate delete");
            } else {
                cg.remove().expect("remove");
            }
            took += start.elapsed();
        }
        println!(
            "cgroup v1: removed after kill by {}: {:.0} us each",
            if crate_delete {
                "cgroups-rs delete"
            } else {
                "polled rmdir"
            },
            took.as_secs_f64() * 1e6 / f64::from(n)
        );
    }
    super::remove_group(&parent).expect("remove the bench parent");
}

/// Freeze + thaw of a cgroup with one process, each waited for until the kernel says it is done.
#[test]
#[ignore = "a benchmark: run it by name with --ignored --nocapture"]
fn bench_freeze_thaw() {
    need_root();
    let parent = format!("lamina-bench-freeze-{}", std::process::id());
    let cg = create(&format!("{parent}/cg"), &Limits::for_function(128, 64)).expect("create");
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    cg.add_process(child.id() as i32).expect("attach");
    let start = Instant::now();
    for _ in 0..FREEZES {
        cg.freeze().expect("freeze");
        cg.thaw().expect("thaw");
    }
    let took = start.elapsed();
    println!(
        "cgroup {}: freeze + thaw: {:.0}/s ({:.1} us a pair)",
        mode().unwrap().name(),
        per_second(FREEZES, took),
        took.as_secs_f64() * 1e6 / f64::from(FREEZES)
    );
    cg.kill_all().expect("kill");
    child.wait().expect("reap sleep");
    cg.remove().expect("remove");
    super::remove_group(&parent).expect("remove the bench parent");
}
