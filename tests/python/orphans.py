# A function that orphans processes on every invocation (`sh -c 'cmd &'`), as a daemonising library
# would. Its orphans are re-parented to the sandbox's pid 1, which must reap them. Used by
# tests/tests/hardening.rs (exec'd and spawner-forked sandboxes) and tests/tests/fastpath_zygote.rs.
import os, signal, subprocess, time


def pids():
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


def zombies():
    found = []
    for pid in pids():
        try:
            stat = open("/proc/%d/stat" % pid).read()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            found.append(pid)
    return found


def handler(event, context):
    if event.get("exit") is not None:
        os._exit(event["exit"])
    if event.get("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    for _ in range(event.get("n", 4)):
        subprocess.run(["/bin/sh", "-c", "/bin/true & /bin/true & exit 0"], check=True)
    # Bounded wait for the orphans to end: then only pid 1 and the runtime are left, unless the
    # orphans stay as zombies (nobody reaps them).
    deadline = time.monotonic() + 3
    while len(pids()) > 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    forked = subprocess.run(["/bin/true"]).returncode
    return {"pid": os.getpid(), "zombies": zombies(), "procs": pids(), "forked": forked}
