//! The runner of the worker's test binaries that have their own `main` (`harness = false`): they
//! must be the sandbox init too (`__sandbox-init`) and run as root, which libtest cannot arrange.
use std::future::Future;
use std::io::Write;
use std::pin::Pin;

pub type TestFuture = Pin<Box<dyn Future<Output = ()>>>;
/// A named test: builds its future when it runs.
pub type Test = (&'static str, fn() -> TestFuture);

/// Becomes the sandbox init when the binary was started as one, and checks it runs as root.
pub fn enter(what: &str) {
    if std::env::args().nth(1).as_deref() == Some("__sandbox-init") {
        lamina_worker::sandbox::init::main();
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} tests must run as root"
    );
}

/// Runs the tests whose name contains the first non-flag argument (all without one), each to
/// its end with failures caught, prints a line per test as libtest does, removes the tests'
/// cgroup parents and exits 1 when any test failed.
pub fn run(tests: Vec<Test>, cgroup_parents: &[&str]) -> ! {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(test())));
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
        std::io::stdout().flush().unwrap();
    }
    for parent in cgroup_parents {
        lamina_worker::sandbox::remove_cgroup_parent(parent);
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}
