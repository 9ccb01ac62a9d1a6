# The hardening probe: a hostile function that tries each escape of the security matrix and
# reports what happened. Used by tests/tests/hardening.rs and tests/tests/fastpath_zygote.rs.
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def err_of(rc):
    return "ok" if rc >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

def syscall(nr, *args):
    return err_of(libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args]))

def try_open(path, mode):
    try:
        with open(path, mode) as f:
            if "w" in mode or "a" in mode:
                f.write("x")
            else:
                f.read(16)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def connect(host, port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
    finally:
        s.close()

def handler(event, context):
    status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
    r = {k: status[k].strip() for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"]}
    r["uid"] = os.getuid()
    os.makedirs("/tmp/m", exist_ok=True)
    r["mount"] = err_of(libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None))
    r["umount"] = err_of(libc.umount2(b"/var/task", 2))
    r["unshare_user"] = err_of(libc.unshare(0x10000000))
    r["unshare_net"] = err_of(libc.unshare(0x40000000))
    r["setns"] = syscall(308, 0, 0)
    r["keyctl"] = syscall(250, 0, 0, 0, 0, 0)
    r["add_key"] = syscall(248, 0, 0, 0, 0, 0)
    r["bpf"] = syscall(321, 0, 0, 0)
    r["perf_event_open"] = syscall(298, 0, 0, -1, -1, 0)
    r["userfaultfd"] = syscall(323, 0)
    r["pivot_root"] = syscall(155, 0, 0)
    r["chroot"] = err_of(libc.chroot(b"/tmp"))
    r["settimeofday"] = syscall(164, 0, 0)
    r["reboot"] = syscall(169, 0, 0, 0, 0)
    r["io_uring_setup"] = syscall(425, 1, 0)
    r["mknod_dev"] = err_of(libc.mknod(b"/tmp/sda", 0o60600, os.makedev(8, 0)))
    child = os.fork()
    if child == 0:
        import time
        time.sleep(5)
        os._exit(0)
    r["ptrace_child"] = syscall(101, 16, child, 0, 0)
    r["process_vm_readv"] = syscall(310, child, 0, 0, 0, 0, 0)
    os.kill(child, 9)
    os.waitpid(child, 0)
    r["sysrq"] = try_open("/proc/sysrq-trigger", "w")
    r["proc_sys"] = try_open("/proc/sys/kernel/hostname", "w")
    def masked(path):
        # Masked (bound to /dev/null) or absent from this kernel: either way nothing to read.
        return len(open(path, "rb").read(64)) if os.path.exists(path) else 0
    r["kcore_bytes"] = masked("/proc/kcore")
    r["keys_bytes"] = masked("/proc/keys")
    r["timer_list_bytes"] = masked("/proc/timer_list")
    r["sys_exists"] = os.path.exists("/sys/fs/cgroup") or os.path.exists("/sys/kernel")
    r["dev"] = sorted(os.listdir("/dev"))
    r["write_root"] = try_open("/evil", "w")
    r["write_usr"] = try_open("/usr/bin/evil", "w")
    r["write_task"] = try_open("/var/task/app.py", "a")
    r["write_runtime"] = try_open("/var/runtime/bootstrap.py", "a")
    r["exe_write"] = try_open("/proc/self/exe", "ab")
    # Pid 1 is Lamina's minimal init (not the runtime): as confined as the function, and not
    # dumpable, so none of its /proc files that lead to its binary or memory can be opened.
    r["pid"] = os.getpid()
    pid1 = dict(l.split(":\t", 1) for l in open("/proc/1/status").read().splitlines() if ":\t" in l)
    r["pid1_status"] = {k: pid1[k].strip() for k in ["Uid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp"]}
    try:
        r["pid1_exe"] = os.readlink("/proc/1/exe")
    except OSError as e:
        r["pid1_exe"] = errno.errorcode.get(e.errno, str(e.errno))
    r["pid1_exe_write"] = try_open("/proc/1/exe", "ab")
    r["pid1_exe_read"] = try_open("/proc/1/exe", "rb")
    r["pid1_mem"] = try_open("/proc/1/mem", "rb")
    r["pid1_environ"] = try_open("/proc/1/environ", "rb")
    for link in ["root", "cwd", "fd"]:
        try:
            os.listdir("/proc/1/%s/" % link)
            r["pid1_" + link] = "ok"
        except OSError as e:
            r["pid1_" + link] = errno.errorcode.get(e.errno, str(e.errno))
    r["pid1_cmdline"] = open("/proc/1/cmdline", "rb").read().decode(errors="replace").split("\0")
    # Sockets: only unix, inet, inet6 and netlink route; no Linux AIO (host-wide resources).
    def sock(family, kind, proto=0):
        try:
            socket.socket(family, kind, proto).close()
            return "ok"
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e.errno))
    r["socket_unix"] = sock(socket.AF_UNIX, socket.SOCK_STREAM)
    r["socket_inet"] = sock(socket.AF_INET, socket.SOCK_STREAM)
    r["socket_inet6"] = sock(socket.AF_INET6, socket.SOCK_DGRAM)
    r["socket_netlink_route"] = sock(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    r["socket_netlink_uevent"] = sock(socket.AF_NETLINK, socket.SOCK_RAW, 15)
    r["socket_vsock"] = sock(40, socket.SOCK_STREAM)
    r["socket_packet"] = sock(17, socket.SOCK_RAW)
    pair = (ctypes.c_int * 2)()
    r["socketpair_unix"] = err_of(libc.socketpair(1, 1, 0, pair))
    r["socketpair_vsock"] = err_of(libc.socketpair(40, 1, 0, pair))
    aio = ctypes.c_ulong(0)
    r["io_setup"] = syscall(206, 1, ctypes.addressof(aio))
    if r["io_setup"] == "ok":
        syscall(207, aio.value)
    r["worker_binaries"] = [p for d in ["/usr/local/bin", "/usr/bin", "/var/tmp", "/bin"]
                            for p in [os.path.join(d, "lamina-worker")] if os.path.exists(p)]
    r["worker_binaries_writable"] = [p for p in r["worker_binaries"] if try_open(p, "ab") == "ok"]
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    r["fds"] = fds
    r["routes"] = open("/proc/net/route").read().splitlines()[1:]
    r["connect_controller"] = connect("127.0.0.1", event["controller_port"])
    r["connect_worker"] = connect("127.0.0.1", event["worker_port"])
    r["connect_metadata"] = connect("169.254.169.254", 80)
    # Python: Lambda's sys.path order, and nothing of the host's installed packages.
    import sys
    r["sys_path"] = list(sys.path)
    import builtins
    r["site_builtins"] = [n for n in ("exit", "quit", "help", "copyright", "credits", "license") if hasattr(builtins, n)]
    host_packages = "/usr/lib/python3/dist-packages"
    r["host_dist_packages"] = sorted(os.listdir(host_packages)) if os.path.isdir(host_packages) else []
    sys.path.append(host_packages)
    try:
        import yaml  # noqa: F401  (python3-yaml on the host)
        r["import_host_yaml"] = "ok"
    except ImportError as e:
        r["import_host_yaml"] = type(e).__name__
    finally:
        sys.path.remove(host_packages)
    r["modules_from_host_packages"] = sorted(
        name for name, mod in list(sys.modules.items())
        if "-packages" in (getattr(mod, "__file__", None) or "")
    )
    env = dict(os.environ)
    r["env_keys"] = sorted(env)
    return r
