//! The `ip` and `nft` commands the agent runs (batched: one process per step), and the names of
//! its interfaces. Blocking: call from `spawn_blocking`.
use std::io::Write;
use std::process::{Command, Stdio};

use super::NetworkError;

/// MTU inside sandboxes: leaves room for the VXLAN header (50 bytes) on a 1500-byte underlay.
pub const SANDBOX_MTU: u32 = 1450;

/// Runs `program args` with `input` on stdin; an error carries its stderr.
pub fn run(program: &str, args: &[&str], input: &str) -> Result<String, NetworkError> {
    let what = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetworkError::Command {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| NetworkError::Command {
                what: what.clone(),
                detail: e.to_string(),
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetworkError::Command {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            what,
            detail: format!(
                "{}: {}\ninput:\n{input}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -b -` with `batch` (one command per line), in the worker's namespace.
pub fn ip_batch(batch: &str) -> Result<(), NetworkError> {
    if batch.trim().is_empty() {
        return Ok(());
    }
    run("ip", &["-b", "-"], batch).map(|_| ())
}

/// `ip -b -` inside the network namespace at `netns_path` (`/proc/PID/ns/net`, `/run/netns/N`).
pub fn ip_batch_in(netns_path: &str, batch: &str) -> Result<(), NetworkError> {
    let arg = format!("--net={netns_path}");
    run("nsenter", &[&arg, "ip", "-b", "-"], batch).map(|_| ())
}

/// `nft -f -` with `script`: one transaction.
pub fn nft(script: &str) -> Result<(), NetworkError> {
    run("nft", &["-f", "-"], script).map(|_| ())
}

/// Names of the interfaces in the worker's namespace that start with `prefix`.
/// Deletes interface `name`. Gone already (never made, or removed with its namespace) counts as
/// done; any other failure is returned, since a link left behind may keep a sandbox plumbed into a
/// network it was taken off.
pub fn delete_link(name: &str) -> Result<(), NetworkError> {
    match ip_batch(&format!("link del {name}\n")) {
        Ok(()) => Ok(()),
        Err(e) => {
            if links_with_prefix(name)?.iter().any(|l| l == name) {
                Err(e)
            } else {
                Ok(())
            }
        }
    }
}

pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>, NetworkError> {
    let out = run("ip", &["-o", "link", "show"], "")?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// A short tag for this worker's interface and table names (4 hex digits of a hash of its id):
/// interface names have at most 15 bytes.
pub fn worker_tag(worker_id: &str) -> String {
    // FNV-1a: stable across builds and runs.
    let mut h: u32 = 0x811c_9dc5;
    for b in worker_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{:04x}", h & 0xffff)
}

/// The 8 hex digits of a `vpc-xxxxxxxx` id.
pub fn vpc_suffix(vpc_id: &str) -> &str {
    vpc_id.strip_prefix("vpc-").unwrap_or(vpc_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_in_an_interface_name() {
        let tag = worker_tag("lamt3w1");
        assert_eq!(tag.len(), 4);
        assert_eq!(tag, worker_tag("lamt3w1"));
        assert_ne!(tag, worker_tag("lamt3w2"));
        assert!(format!("lb{tag}{}", vpc_suffix("vpc-1a2b3c4d")).len() <= 15);
    }
}
