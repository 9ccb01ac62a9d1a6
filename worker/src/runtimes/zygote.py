"""Lamina's Python zygote: imports what the bootstrap imports once, then forks a child per sandbox.

Started by the worker (`worker/src/sandbox/zygote.rs`) as host root with an empty environment:
`python3.11 -c <loader>`, this file on stdin, its socket to the worker on fd 3, on which the first
message is `CONFIG {"runtime_dir": ...}` with a memfd copy of `liblamina_worker.so` attached. No host path is on the command line, in
the environment or in a code object: a sandbox sees only `/var/runtime/...` names.
No function code ever runs in the zygote itself. Each child it forks builds its sandbox with the very
code of an exec'd sandbox init (the library's `lamina_zygote_*` functions: namespaces, root, uid,
capabilities, no_new_privs, seccomp) and only then runs the bootstrap, in this interpreter.
"""

import ctypes
import gc
import io
import os
import select
import signal
import socket
import sys
import types

# The zygote's own directory must not shadow the standard library.
sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]

# What the runtime imports (see lamina_runtime.py), and json, paid once here instead of in every
# cold start; a forked sandbox copies only the pages it writes. Not `logging`: it would be set up in
# every sandbox at once (the runtime configures it when it is imported), and with `threading` it
# registers at-fork hooks that run in the zygote and in each child: ~0.5 MB more per idle sandbox.
# A function that logs imports it in its sandbox, as an exec'd runtime does.
import _json  # noqa: E402,F401
import _socket  # noqa: E402,F401
import importlib  # noqa: E402
import site  # noqa: E402  (imported, not run: the zygote has -S; see run())
import json  # noqa: E402
import time  # noqa: E402,F401

zsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=os.dup(3))
os.close(3)
_config, _fds, _, _ = socket.recv_fds(zsock, 65536, 1)
if not _config.startswith(b"CONFIG ") or len(_fds) != 1:
    sys.exit("zygote: expected CONFIG and the library's memfd from the worker")
_config = json.loads(_config[len(b"CONFIG "):])
RUNTIME_DIR = _config["runtime_dir"]
IN_SANDBOX = "/var/runtime/bootstrap.py"
RUNTIME_IN_SANDBOX = "/var/runtime/lamina_runtime.py"

# The library comes as a memfd (no host path in the sandboxes' /proc/self/maps); the fd is closed
# once it is mapped. PyDLL: the GIL stays held across the calls (they may fork).
lib = ctypes.PyDLL("/proc/self/fd/%d" % _fds[0])
os.close(_fds[0])
lib.lamina_zygote_enter.restype = ctypes.c_int
lib.lamina_zygote_setup.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
lib.lamina_zygote_setup.restype = ctypes.c_ssize_t

# The runtime module, as `bootstrap.py` would import it in a sandbox (under its in-sandbox name).
with open(os.path.join(RUNTIME_DIR, "lamina_runtime.py"), "rb") as f:
    _code = compile(f.read(), RUNTIME_IN_SANDBOX, "exec")
runtime = types.ModuleType("lamina_runtime")
runtime.__file__ = RUNTIME_IN_SANDBOX
exec(_code, runtime.__dict__)
sys.modules["lamina_runtime"] = runtime
del _code, _config, _fds

wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFEXITED(status):
            zsock.send(b"EXIT %d %d -" % (pid, os.WEXITSTATUS(status)))
        elif os.WIFSIGNALED(status):
            zsock.send(b"EXIT %d - %d" % (pid, os.WTERMSIG(status)))


def become_sandbox(sock_fd, out_fd):
    """In the forked child: fds in place, zygote state dropped, then the sandbox is built."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.dup2(sock_fd, 3)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    for fd in {sock_fd, out_fd, null, wake_r, wake_w, zsock.detach()}:
        if fd > 3:
            os.close(fd)
    # Namespaces and pid 1, forked in Rust: the process left outside runs no more Python (each
    # page it touched would count again once pid 1 writes it too).
    if lib.lamina_zygote_enter() != 0:
        os._exit(1)
    buf = ctypes.create_string_buffer(64 << 10)  # argv + environment (Lambda allows 4 KB of variables)
    n = lib.lamina_zygote_setup(buf, len(buf))
    if n < 0:
        os._exit(1)
    return runtime.json_loads(ctypes.string_at(buf, n))


def serve():
    """Forks a child per SPAWN. Returns only in a child, with its runtime config."""
    zsock.send(b"READY")
    gc.collect()
    gc.freeze()  # the children share these objects copy-on-write: keep the collector off them
    while True:
        try:
            ready, _, _ = select.select([zsock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            reap()
        if zsock in ready:
            msg, fds, _, _ = socket.recv_fds(zsock, 64, 2)
            if not msg:
                sys.exit(0)  # the worker is gone
            if msg != b"SPAWN" or len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    return become_sandbox(*fds)
                except BaseException:
                    os._exit(1)
            for fd in fds:
                os.close(fd)
            zsock.send(b"PID %d" % pid)


def run(cfg):
    """What `python3.11 /var/runtime/bootstrap.py` would have set up, then the bootstrap itself."""
    os.environ.clear()
    for key, value in cfg["env"]:
        os.environ[key] = value
    env = os.environ
    sys.argv = list(cfg["argv"][1:]) or [IN_SANDBOX]
    # The builtins `site` gives an exec'd interpreter (exit, quit, help, copyright, credits,
    # license): the zygote runs with -S, so that no host package directory was ever on its path and
    # no host `.pth` file ran in it. Not `site.main()`: its package directories would be dropped by
    # `runtime.main()` (which puts `sys.path` in Lambda's order) after costing a directory scan.
    site.setquit()
    site.setcopyright()
    site.sethelper()
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=unbuffered
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    main = types.ModuleType("__main__")  # what runs bootstrap.py in an exec'd runtime
    main.__file__ = IN_SANDBOX
    main.lamina_runtime = runtime
    sys.modules["__main__"] = main
    importlib.invalidate_caches()
    runtime.main()


run(serve())
