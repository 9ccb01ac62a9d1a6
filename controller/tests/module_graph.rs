//! The controller's modules form no import cycle: `deploy/modgraph.py` (the graph between the
//! top-level modules and the submodules of `api/`, `rest/` and `queue/`) exits 0.
use std::path::Path;
use std::process::Command;

#[test]
fn the_controller_has_no_module_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("../deploy/modgraph.py"))
        .arg("--root")
        .arg(root.join("src"));
    let out = cmd.output().expect("python3 runs deploy/modgraph.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "module cycles:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The graph is really read: the pipeline is below the API and above the context.
    assert!(stdout.contains("\ninvocation -> "), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("api/invoke -> ") && l.contains("invocation")),
        "{stdout}"
    );
}

/// The check can fail: two modules that import each other are a cycle and the script exits 1.
#[test]
fn the_graph_script_reports_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), "use crate::a::A;\npub struct B;\n").unwrap();
    let out = Command::new("python3")
        .arg(root.join("../deploy/modgraph.py"))
        .arg("--root")
        .arg(dir.path())
        .output()
        .expect("python3 runs deploy/modgraph.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("cycle: a <-> b"), "{stdout}");
}
