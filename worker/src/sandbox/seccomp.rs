//! The seccomp allowlist of function processes, compiled at build time from
//! `worker/seccomp/allowlist.txt` (see `worker/build.rs`) and installed by the sandbox init as the last
//! step before exec. Not allowed: EPERM; `clone` with namespace flags: EPERM; `clone3`: ENOSYS (libc
//! falls back to `clone`); `ioctl` TIOCSTI/TIOCLINUX: EPERM; `socket`/`socketpair` of another
//! family than unix, inet, inet6 or netlink route: EAFNOSUPPORT; another architecture: process
//! killed.
mod generated {
    include!(concat!(env!("OUT_DIR"), "/seccomp_program.rs"));
}

pub use generated::{ALLOWED, PROGRAM};

/// Installs the filter on the calling thread (inherited by everything it execs and forks).
/// `no_new_privs` must be set first.
pub fn install() -> Result<(), nix::Error> {
    if PROGRAM.is_empty() {
        return Err(nix::Error::ENOSYS);
    }
    let mut filters: Vec<libc::sock_filter> = PROGRAM
        .iter()
        .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
        .collect();
    let prog = libc::sock_fprog {
        len: filters.len() as u16,
        filter: filters.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filters`, a valid array of `len` instructions that outlives the call;
    // the kernel copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! A small classic-BPF interpreter runs the generated program on synthetic `seccomp_data`.
    use super::*;

    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0001;
    const ENOSYS: u32 = 0x0005_0026;
    const EAFNOSUPPORT: u32 = 0x0005_0061;
    const KILL: u32 = 0x8000_0000;
    const X86_64: u32 = 0xc000_003e;

    fn nr(name: &str) -> u32 {
        ALLOWED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, nr)| *nr)
            .unwrap_or_else(|| panic!("{name} not in the allowlist"))
    }

    fn run(arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let (code, jt, jf, k) = PROGRAM[pc];
            pc += 1;
            match code {
                0x20 => {
                    let o = k as usize;
                    acc = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
                }
                0x15 => pc += if acc == k { jt } else { jf } as usize,
                0x35 => pc += if acc >= k { jt } else { jf } as usize,
                0x45 => pc += if acc & k != 0 { jt } else { jf } as usize,
                0x06 => return k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    // Numbers of refused syscalls (x86_64), which by design are not in ALLOWED.
    const MOUNT: u32 = 165;
    const UNSHARE: u32 = 272;
    const SETNS: u32 = 308;
    const PTRACE: u32 = 101;
    const BPF: u32 = 321;
    const KEYCTL: u32 = 250;
    const CLONE3: u32 = 435;
    const IO_URING_SETUP: u32 = 425;
    const IO_SETUP: u32 = 206;
    const IO_SUBMIT: u32 = 209;
    const IO_GETEVENTS: u32 = 208;
    const IO_CANCEL: u32 = 210;
    const IO_DESTROY: u32 = 207;
    const IO_PGETEVENTS: u32 = 333;

    #[test]
    fn allows_the_listed_and_refuses_the_rest() {
        assert_eq!(run(X86_64, nr("read"), [0; 6]), ALLOW);
        assert_eq!(run(X86_64, nr("execve"), [0; 6]), ALLOW);
        assert_eq!(run(X86_64, nr("futex"), [0; 6]), ALLOW);
        for refused in [
            MOUNT,
            UNSHARE,
            SETNS,
            PTRACE,
            BPF,
            KEYCTL,
            IO_URING_SETUP,
            IO_SETUP,
            IO_SUBMIT,
            IO_GETEVENTS,
            IO_CANCEL,
            IO_DESTROY,
            IO_PGETEVENTS,
        ] {
            assert_eq!(run(X86_64, refused, [0; 6]), EPERM, "syscall {refused}");
            assert!(ALLOWED.iter().all(|(_, n)| *n != refused));
        }
        // Not even a listed number may come in through the x32 ABI, nor another architecture.
        assert_eq!(run(X86_64, nr("read") | 0x4000_0000, [0; 6]), EPERM);
        assert_eq!(run(0x4000_0003, nr("read"), [0; 6]), KILL);
    }

    #[test]
    fn clone_without_namespace_flags_only() {
        let thread_flags = 0x003d_0f00; // what glibc's pthread_create passes
        assert_eq!(
            run(X86_64, nr("clone"), [thread_flags, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(run(X86_64, nr("clone"), [17, 0, 0, 0, 0, 0]), ALLOW); // fork: SIGCHLD
        for ns in [
            0x2_0000u64,
            0x1000_0000,
            0x2000_0000,
            0x4000_0000,
            0x0800_0000,
            0x80,
        ] {
            assert_eq!(
                run(X86_64, nr("clone"), [17 | ns, 0, 0, 0, 0, 0]),
                EPERM,
                "flag {ns:#x}"
            );
        }
        assert_eq!(run(X86_64, CLONE3, [0; 6]), ENOSYS);
    }

    #[test]
    fn ioctl_refuses_terminal_injection() {
        assert_eq!(run(X86_64, nr("ioctl"), [0, 0x5401, 0, 0, 0, 0]), ALLOW); // TCGETS
        assert_eq!(run(X86_64, nr("ioctl"), [0, 0x5412, 0, 0, 0, 0]), EPERM); // TIOCSTI
        assert_eq!(run(X86_64, nr("ioctl"), [0, 0x541c, 0, 0, 0, 0]), EPERM); // TIOCLINUX
    }

    #[test]
    fn socket_families_are_limited_to_what_functions_need() {
        const SOCK_STREAM: u64 = 1;
        const SOCK_RAW: u64 = 3;
        for call in ["socket", "socketpair"] {
            for allowed in [1u64, 2, 10] {
                assert_eq!(
                    run(X86_64, nr(call), [allowed, SOCK_STREAM, 0, 0, 0, 0]),
                    ALLOW,
                    "{call} family {allowed}"
                );
            }
            // netlink: NETLINK_ROUTE only (not KOBJECT_UEVENT 15, AUDIT 9, ...).
            assert_eq!(run(X86_64, nr(call), [16, SOCK_RAW, 0, 0, 0, 0]), ALLOW);
            for proto in [15u64, 9, 4, 16] {
                assert_eq!(
                    run(X86_64, nr(call), [16, SOCK_RAW, proto, 0, 0, 0]),
                    EAFNOSUPPORT,
                    "{call} netlink protocol {proto}"
                );
            }
            // vsock, packet, bluetooth, alg, key, tipc, xdp, and families that do not exist.
            for refused in [40u64, 17, 31, 38, 15, 30, 44, 0, 46, 255] {
                assert_eq!(
                    run(X86_64, nr(call), [refused, SOCK_STREAM, 0, 0, 0, 0]),
                    EAFNOSUPPORT,
                    "{call} family {refused}"
                );
            }
        }
        // Only the low 32 bits are the kernel's `int`: the high half changes nothing.
        assert_eq!(
            run(
                X86_64,
                nr("socket"),
                [(1 << 32) | 40, SOCK_STREAM, 0, 0, 0, 0]
            ),
            EAFNOSUPPORT
        );
        assert_eq!(
            run(
                X86_64,
                nr("socket"),
                [(1 << 32) | 1, SOCK_STREAM, 0, 0, 0, 0]
            ),
            ALLOW
        );
    }
}
