//! Compiles `seccomp/allowlist.txt` into a classic-BPF seccomp program for x86_64, written to
//! `$OUT_DIR/seccomp_program.rs` as `PROGRAM: &[(u16, u8, u8, u32)]` (code, jt, jf, k).
//! Syscall numbers come from the kernel headers (`linux-libc-dev`, installed with g++).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

#[path = "build_id.rs"]
mod build_id;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const EAFNOSUPPORT: u32 = 97;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
const CLONE_NS_FLAGS: u32 = 0x0002_0000
    | 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x80;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;
/// The address families `socket` and `socketpair` may create (see seccomp/allowlist.txt).
const AF_UNIX: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const AF_NETLINK: u32 = 16;
const NETLINK_ROUTE: u32 = 0;
/// Offsets in `struct seccomp_data`: nr, arch, instruction pointer, args[6] (low 32 bits first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0: u32 = 16;
const OFF_ARG1: u32 = 24;
const OFF_ARG2: u32 = 32;

/// Syscalls newer than the kernel headers of older distributions (x86_64 numbers are stable).
const NEWER_THAN_HEADERS: [(&str, u32); 2] = [("fchmodat2", 452), ("mseal", 462)];

fn syscall_numbers() -> BTreeMap<String, u32> {
    let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
    let text = std::fs::read_to_string(header).unwrap_or_else(|e| {
        panic!("cannot read {header} ({e}): install linux-libc-dev (deploy/install-deps.sh does)")
    });
    let mut numbers: BTreeMap<String, u32> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("#define __NR_")?;
            let (name, nr) = rest.split_once(char::is_whitespace)?;
            Some((name.to_string(), nr.trim().parse().ok()?))
        })
        .collect();
    for (name, nr) in NEWER_THAN_HEADERS {
        numbers.entry(name.to_string()).or_insert(nr);
    }
    numbers
}

fn main() {
    build_id::emit();
    let policy = "seccomp/allowlist.txt";
    println!("cargo:rerun-if-changed={policy}");
    println!("cargo:rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("seccomp_program.rs");
    if arch != "x86_64" {
        // Sandboxes refuse to start without a policy for their architecture (see seccomp.rs).
        std::fs::write(
            &out,
            "pub const ALLOWED: &[(&str, u32)] = &[];\npub const PROGRAM: &[(u16, u8, u8, u32)] = &[];\n",
        )
        .unwrap();
        return;
    }
    let numbers = syscall_numbers();
    let text = std::fs::read_to_string(policy).expect("read seccomp/allowlist.txt");
    let mut allowed: BTreeMap<u32, String> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{policy}:{}: expected `syscall: reason`", i + 1));
        let name = name.trim();
        assert!(
            !reason.trim().is_empty(),
            "{policy}:{}: {name} has no reason",
            i + 1
        );
        let nr = *numbers
            .get(name)
            .unwrap_or_else(|| panic!("{policy}:{}: unknown syscall {name}", i + 1));
        if let Some(prev) = allowed.insert(nr, name.to_string()) {
            panic!("{policy}:{}: {name} listed twice (as {prev})", i + 1);
        }
    }
    let nr = |name: &str| numbers[name];
    let (clone, clone3, ioctl) = (nr("clone"), nr("clone3"), nr("ioctl"));
    let (socket, socketpair) = (nr("socket"), nr("socketpair"));
    let special = [clone, clone3, ioctl, socket, socketpair];
    let mut p: Vec<(u16, u8, u8, u32)> = vec![
        (LD_W_ABS, 0, 0, OFF_ARCH),
        (JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        (RET_K, 0, 0, RET_KILL_PROCESS),
        (LD_W_ABS, 0, 0, OFF_NR),
        (JGE_K, 0, 1, X32_SYSCALL_BIT),
        (RET_K, 0, 0, RET_ERRNO | EPERM),
        // clone: refuse namespace flags.
        (JEQ_K, 0, 4, clone),
        (LD_W_ABS, 0, 0, OFF_ARG0),
        (JSET_K, 0, 1, CLONE_NS_FLAGS),
        (RET_K, 0, 0, RET_ERRNO | EPERM),
        (RET_K, 0, 0, RET_ALLOW),
        // clone3: ENOSYS so libc falls back to clone.
        (JEQ_K, 0, 1, clone3),
        (RET_K, 0, 0, RET_ERRNO | ENOSYS),
        // ioctl: refuse TIOCSTI and TIOCLINUX.
        (JEQ_K, 0, 5, ioctl),
        (LD_W_ABS, 0, 0, OFF_ARG1),
        (JEQ_K, 2, 0, TIOCSTI),
        (JEQ_K, 1, 0, TIOCLINUX),
        (RET_K, 0, 0, RET_ALLOW),
        (RET_K, 0, 0, RET_ERRNO | EPERM),
        // socket and socketpair: unix, inet, inet6, and netlink with NETLINK_ROUTE only (the
        // int arguments are the low 32 bits; the kernel ignores the rest). Anything else:
        // EAFNOSUPPORT, what a kernel without that family answers.
        (JEQ_K, 1, 0, socket),
        (JEQ_K, 0, 9, socketpair),
        (LD_W_ABS, 0, 0, OFF_ARG0),
        (JEQ_K, 5, 0, AF_UNIX),
        (JEQ_K, 4, 0, AF_INET),
        (JEQ_K, 3, 0, AF_INET6),
        (JEQ_K, 0, 3, AF_NETLINK),
        (LD_W_ABS, 0, 0, OFF_ARG2),
        (JEQ_K, 0, 1, NETLINK_ROUTE),
        (RET_K, 0, 0, RET_ALLOW),
        (RET_K, 0, 0, RET_ERRNO | EAFNOSUPPORT),
    ];
    for name in ["socket", "socketpair"] {
        assert!(
            allowed.values().any(|n| n == name),
            "{name} must be in the allowlist: its rule only narrows it"
        );
    }
    for (&n, name) in &allowed {
        if special.contains(&n) {
            assert!(
                name != "clone3",
                "clone3 must not be in the allowlist: it has its own rule"
            );
            continue;
        }
        p.push((JEQ_K, 0, 1, n));
        p.push((RET_K, 0, 0, RET_ALLOW));
    }
    p.push((RET_K, 0, 0, RET_ERRNO | EPERM));
    assert!(p.len() < 4096, "seccomp program too long: {}", p.len());
    let mut src = String::from("/// Generated by build.rs from seccomp/allowlist.txt.\n");
    writeln!(src, "pub const ALLOWED: &[(&str, u32)] = &[").unwrap();
    for (n, name) in &allowed {
        writeln!(src, "    ({name:?}, {n}),").unwrap();
    }
    writeln!(src, "];").unwrap();
    writeln!(src, "pub const PROGRAM: &[(u16, u8, u8, u32)] = &[").unwrap();
    for (code, jt, jf, k) in &p {
        writeln!(src, "    ({code:#06x}, {jt}, {jf}, {k:#010x}),").unwrap();
    }
    writeln!(src, "];").unwrap();
    std::fs::write(&out, src).unwrap();
}
