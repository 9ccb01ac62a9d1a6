//! The worker's own health, as its heartbeat reports it: out of file descriptors.
//!
//! When an accept (a sandbox's Runtime API) or a cold start fails with `EMFILE` (this process is
//! at its `RLIMIT_NOFILE`) or `ENFILE` (the host is at `fs.file-max`), [`FDS`] records it and the
//! worker reports itself unhealthy: its heartbeat carries no free memory
//! (`service::heartbeat_request`), so the controller's placement sends it no cold start (its warm
//! sandboxes, which need no new descriptor, keep serving) until the descriptors are back: each
//! heartbeat re-checks the use (`/proc/self/fd` against the limit, `/proc/sys/fs/file-nr` against
//! the host's maximum) and clears the state below [`RECOVERED_PERCENT`].
//!
//! The worker also raises its soft `RLIMIT_NOFILE` to the hard limit at start
//! ([`raise_nofile_limit`]); what one sandbox can hold is bounded by the Runtime API's
//! connection cap (`runtime_api::MAX_CONNECTIONS`).
use std::io;
use std::sync::Mutex;

/// Below this share of the limits (process and host) the descriptors count as available again.
pub const RECOVERED_PERCENT: u64 = 80;

/// The worker's descriptor health (one per process: the limit is the process's).
pub static FDS: FdHealth = FdHealth::new();

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot read RLIMIT_NOFILE: {0}")]
    GetLimit(nix::Error),
    #[error("cannot raise RLIMIT_NOFILE to its hard limit {hard}: {source}")]
    SetLimit { hard: u64, source: nix::Error },
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        source: io::Error,
    },
}

/// Descriptors in use, of this process and of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdUsage {
    pub open: u64,
    /// Soft `RLIMIT_NOFILE`.
    pub limit: u64,
    /// Allocated on the host (`file-nr`'s first field) and its maximum (`fs.file-max`).
    pub host_open: u64,
    pub host_max: u64,
}

impl FdUsage {
    /// Both below [`RECOVERED_PERCENT`] of their limits.
    pub fn has_room(&self) -> bool {
        let below =
            |used: u64, max: u64| used.saturating_mul(100) < max.saturating_mul(RECOVERED_PERCENT);
        below(self.open, self.limit) && below(self.host_open, self.host_max)
    }
}

/// Whether an fd shortage was seen and not yet found recovered; the reason shown to operators.
#[derive(Debug, Default)]
pub struct FdHealth {
    exhausted: Mutex<Option<String>>,
}

impl FdHealth {
    pub const fn new() -> FdHealth {
        FdHealth {
            exhausted: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.exhausted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `e` if it is `EMFILE`/`ENFILE`; returns whether it was.
    pub fn note_io_error(&self, e: &io::Error) -> bool {
        match e.raw_os_error() {
            Some(code) if is_fd_shortage(code) => {
                self.mark(&e.to_string());
                true
            }
            _ => false,
        }
    }

    /// Records `e` if it, or an error in its source chain, is `EMFILE`/`ENFILE` (an `io::Error`, a
    /// `nix` errno, or a message carrying one); returns whether it was.
    pub fn note_error(&self, e: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(e);
        while let Some(err) = next {
            let code = err
                .downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error)
                .or_else(|| err.downcast_ref::<nix::Error>().map(|n| *n as i32));
            let shortage = code.is_some_and(is_fd_shortage) || {
                let text = err.to_string();
                text.contains("Too many open files")
                    || text.contains("EMFILE")
                    || text.contains("ENFILE")
            };
            if shortage {
                self.mark(&e.to_string());
                return true;
            }
            next = err.source();
        }
        false
    }

    fn mark(&self, detail: &str) {
        let mut st = self.lock();
        if st.is_none() {
            tracing::error!(
                detail,
                "out of file descriptors: reporting this worker unhealthy (no free memory) until they are available again"
            );
        }
        *st = Some(format!("out of file descriptors: {detail}"));
    }

    /// The reason this worker is unhealthy, if it is: a recorded shortage stays until `usage`
    /// (called only then) shows room again.
    pub fn check(&self, usage: impl FnOnce() -> Result<FdUsage, HealthError>) -> Option<String> {
        let mut st = self.lock();
        st.as_ref()?;
        match usage() {
            Ok(u) if u.has_room() => {
                tracing::info!(
                    open = u.open,
                    limit = u.limit,
                    "file descriptors available again: healthy"
                );
                *st = None;
                None
            }
            Ok(_) => st.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the file descriptors in use");
                st.clone()
            }
        }
    }
}

fn is_fd_shortage(code: i32) -> bool {
    code == libc::EMFILE || code == libc::ENFILE
}

/// This process's and the host's descriptor use, from `/proc`.
pub fn fd_usage() -> Result<FdUsage, HealthError> {
    let open = std::fs::read_dir("/proc/self/fd")
        .map_err(|source| HealthError::Read {
            path: "/proc/self/fd",
            source,
        })?
        .count() as u64;
    let (limit, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_err(HealthError::GetLimit)?;
    let path = "/proc/sys/fs/file-nr";
    let text =
        std::fs::read_to_string(path).map_err(|source| HealthError::Read { path, source })?;
    let fields: Vec<u64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let (host_open, host_max) = match fields.as_slice() {
        [open, _, max] => (*open, *max),
        _ => (0, u64::MAX),
    };
    Ok(FdUsage {
        open,
        limit,
        host_open,
        host_max,
    })
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (systemd's units set a high `LimitNOFILE`);
/// returns the limit now in force.
pub fn raise_nofile_limit() -> Result<u64, HealthError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(HealthError::GetLimit)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .map_err(|source| HealthError::SetLimit { hard, source })?;
    }
    Ok(hard.max(soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(open: u64) -> Result<FdUsage, HealthError> {
        Ok(FdUsage {
            open,
            limit: 1000,
            host_open: 10,
            host_max: 1_000_000,
        })
    }

    #[test]
    fn emfile_makes_unhealthy_until_descriptors_are_back() {
        let h = FdHealth::new();
        // Healthy: the usage is not even read.
        assert_eq!(h.check(|| panic!("not read while healthy")), None);
        // Another error is not a shortage.
        assert!(!h.note_io_error(&io::Error::from_raw_os_error(libc::ECONNRESET)));
        assert_eq!(h.check(|| usage(999)), None);

        assert!(h.note_io_error(&io::Error::from_raw_os_error(libc::EMFILE)));
        let reason = h.check(|| usage(950)).expect("unhealthy");
        assert!(reason.contains("out of file descriptors"), "{reason}");
        assert!(reason.contains("Too many open files"), "{reason}");
        // Still short (above 80 %): still unhealthy.
        assert!(h.check(|| usage(800)).is_some());
        // Room again: healthy.
        assert_eq!(h.check(|| usage(799)), None);
        assert_eq!(h.check(|| panic!("not read while healthy")), None);
    }

    #[test]
    fn enfile_counts_and_the_host_must_have_room_too() {
        let h = FdHealth::new();
        assert!(h.note_io_error(&io::Error::from_raw_os_error(libc::ENFILE)));
        let host_full = || {
            Ok(FdUsage {
                open: 10,
                limit: 1000,
                host_open: 990,
                host_max: 1000,
            })
        };
        assert!(h.check(host_full).is_some());
        assert_eq!(h.check(|| usage(10)), None);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start a sandbox: {source}")]
    struct Wrapped {
        source: io::Error,
    }

    #[test]
    fn a_cold_start_error_is_searched_down_its_sources() {
        let h = FdHealth::new();
        let e = Wrapped {
            source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        };
        assert!(!h.note_error(&e));
        let e = Wrapped {
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert!(h.note_error(&e));
        assert!(h
            .check(|| usage(999))
            .unwrap()
            .contains("cannot start a sandbox"));
        let h = FdHealth::new();
        assert!(h.note_error(&nix::Error::ENFILE));
        assert!(h.check(|| usage(999)).is_some());
    }
}
