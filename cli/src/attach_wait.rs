//! `fnctl vpc attach-netns` waits for the address: the controller stores the attachment and the
//! worker plumbs it on its next network sync, so without waiting the command would return before
//! the namespace has its address. When the namespace is on this host, poll it (bounded); else, or
//! when the wait runs out, say on stderr who applies the address and how to check.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lamina_client::v1;

/// How long `attach-netns` waits for the worker to configure the address.
pub const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(200);
/// `ip -o -4 addr show` of one namespace: a few lines per interface; more is not `ip`'s output.
const MAX_IP_OUTPUT: usize = 1 << 20;

/// What became of the wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The address is configured in the namespace.
    Yes,
    /// The namespace is not on this host (or its name is not one this host can have).
    NotHere,
    /// The namespace is here but the address did not appear within the bound (or `ip` failed:
    /// the reason).
    NotYet(String),
}

/// A name `/run/netns/NAME` can have: one path component.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
}

/// Whether `ip -o -4 addr show` output has `address` (with or without a `/prefix`) on an interface.
pub fn has_address(ip_output: &str, address: &str) -> bool {
    let want = address.split('/').next().unwrap_or(address);
    ip_output.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .windows(2)
            .any(|w| w[0] == "inet" && w[1].split('/').next() == Some(want))
    })
}

fn addresses_in(netns: &str) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["-n", netns, "-o", "-4", "addr", "show"])
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip -n {netns} -o -4 addr show` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if out.stdout.len() > MAX_IP_OUTPUT {
        return Err(format!(
            "`ip -n {netns} -o -4 addr show` printed over {MAX_IP_OUTPUT} bytes"
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits up to `bound` for `address` to be configured in the namespace `netns` of this host.
pub async fn wait_for_address(netns: &str, address: &str, bound: Duration) -> Applied {
    if !plain_name(netns) || !Path::new("/run/netns").join(netns).exists() {
        return Applied::NotHere;
    }
    let start = Instant::now();
    loop {
        match addresses_in(netns) {
            Ok(out) if has_address(&out, address) => return Applied::Yes,
            Ok(_) => {}
            Err(e) => return Applied::NotYet(e),
        }
        if start.elapsed() >= bound {
            return Applied::NotYet(format!("not configured within {}s", bound.as_secs()));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The note for stderr when the address is not (known to be) applied yet; `None` when it is.
pub fn note(a: &v1::NetnsAttachment, applied: &Applied) -> Option<String> {
    let worker = if a.worker_id.is_empty() {
        "the namespace's worker"
    } else {
        &a.worker_id
    };
    let check = format!("check with `ip -n {} -o -4 addr show`", a.netns);
    match applied {
        Applied::Yes => None,
        Applied::NotHere => Some(format!(
            "note: network namespace {} is not on this host: worker {worker} configures {} in it \
             on its next network sync; {check} on that host",
            a.netns, a.address
        )),
        Applied::NotYet(why) => Some(format!(
            "note: {} is not in network namespace {} yet ({why}): worker {worker} configures it on \
             its next network sync; {check}",
            a.address, a.netns
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: &str = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                      5: lep1a2b3c    inet 10.231.1.12/24 brd 10.231.1.255 scope global lep1a2b3c\\       valid_lft forever preferred_lft forever\n";

    #[test]
    fn finds_the_address_and_not_a_prefix_of_it() {
        assert!(has_address(IP, "10.231.1.12"));
        assert!(has_address(IP, "10.231.1.12/24"));
        assert!(!has_address(IP, "10.231.1.1"));
        assert!(
            !has_address(IP, "10.231.1.255"),
            "a broadcast address is not configured"
        );
        assert!(!has_address("", "10.231.1.12"));
    }

    #[test]
    fn only_plain_names_are_looked_up() {
        assert!(plain_name("lamdb-1"));
        for bad in ["", ".", "..", "a/b", "../etc", "x\0"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_namespace_not_on_this_host_is_said_so() {
        let a = v1::NetnsAttachment {
            netns: "lamina-no-such-netns-here".into(),
            address: "10.0.0.2".into(),
            worker_id: "w7".into(),
            ..Default::default()
        };
        let applied = wait_for_address(&a.netns, &a.address, WAIT).await;
        assert_eq!(applied, Applied::NotHere);
        let n = note(&a, &applied).unwrap();
        assert!(
            n.contains("not on this host") && n.contains("worker w7"),
            "{n}"
        );
        assert!(
            n.contains("ip -n lamina-no-such-netns-here -o -4 addr show"),
            "{n}"
        );
        assert_eq!(note(&a, &Applied::Yes), None);
    }
}
