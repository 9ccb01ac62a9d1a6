//! The sandbox's pid 1 reaps what a function orphans: shared by the exec'd/spawner-forked
//! (`hardening.rs`) and zygote-forked (`fastpath_zygote.rs`) tests.
use anyhow::Result;

use crate::{create_python, invoke, json, unique, Client, Cluster};

/// The function of `tests/python/orphans.py`.
pub const ORPHANS_PY: &str = include_str!("../python/orphans.py");

/// Creates the orphaning function and invokes it `warm` times in one warm sandbox (a cluster with
/// a low `--pids-max`, so that unreaped zombies would soon make every fork fail): every time, no
/// zombie is left, only pid 1 and the runtime (pid 2) remain, and the runtime can still fork. Then
/// a runtime that exits with 7, and one killed by SIGKILL, are reported with their own status.
pub async fn orphans_are_reaped(c: &Client, cluster: &Cluster, warm: usize) -> Result<()> {
    let name = unique("orphans");
    create_python(c, &name, ORPHANS_PY).await?;
    for i in 0..warm {
        let r = invoke(c, &name, r#"{"n": 4}"#).await?;
        assert_eq!(
            r.function_error,
            "",
            "invocation {i}: {}\n{}",
            String::from_utf8_lossy(&r.payload),
            cluster.logs()
        );
        let v = json(&r);
        assert_eq!(v["zombies"], serde_json::json!([]), "invocation {i}: {v}");
        assert_eq!(v["procs"], serde_json::json!([1, 2]), "invocation {i}: {v}");
        assert_eq!(v["forked"], 0, "invocation {i}: {v}");
        // The same (warm) sandbox every time: its runtime is pid 2.
        assert_eq!(v["pid"], 2, "invocation {i}: {v}");
    }
    for (event, want) in [
        (r#"{"exit": 7}"#, "Runtime exited with error: exit status 7"),
        (
            r#"{"kill": true}"#,
            "Runtime exited with error: signal: killed",
        ),
    ] {
        let r = invoke(c, &name, event).await?;
        assert_eq!(r.function_error, "Unhandled", "{r:?}");
        let v = json(&r);
        assert_eq!(v["errorType"], "Runtime.ExitError", "{event}: {v}");
        let msg = v["errorMessage"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{event}: {msg}");
    }
    // And the function starts again in a fresh sandbox.
    let v = json(&invoke(c, &name, r#"{"n": 1}"#).await?);
    assert_eq!(v["zombies"], serde_json::json!([]), "{v}");
    Ok(())
}
