"""Process identity and execution: ids, hostname, execve."""
import os
import resource
import select
import signal

from minirun.linux import explain


def process_start_time(pid):
    """Field 22 of /proc/PID/stat, which tells a live process from a reused
    pid; None if it is gone, or dead and waiting to be reaped (a zombie:
    whoever reaps it, perhaps a host init that never does, it is over) — proc(5)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def wait_for_end(pid, start_time, timeout=None):
    """Sleep until process `pid` (the one started at `start_time`) has ended,
    or `timeout` seconds have passed. A pidfd becomes readable when its
    process exits, so the wake-up is the exit itself, not the next turn of a
    polling loop — pidfd_open(2), select(2). False, at once, if there is no
    such process to wait for (gone already, or another one has its pid)."""
    if pid is None:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if process_start_time(pid) != start_time:
            return False
        select.select([fd], [], [], timeout)
        return True
    finally:
        os.close(fd)


def close_inherited_fds(keep):
    """Close every file descriptor above 2 except `keep`: whatever the caller
    of minirun had open (a directory, a socket, a log file) must not reach
    the container, where /proc/self/fd/N would reopen it — close_range(2)."""
    explain.step(f"close_range(3, ~0U) but {sorted(keep)}", "close_range(2)")
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def new_session():
    """Start a session of our own, with no controlling terminal: the
    caller's terminal is out of reach (TIOCSTI and job control need it as
    the controlling terminal) — setsid(2)."""
    explain.step("setsid()", "setsid(2)")
    os.setsid()


def set_dumpable(on):
    """A non-dumpable process's /proc/PID files (exe, environ, mem) belong to
    root of the host and ptrace is refused — PR_SET_DUMPABLE, see prctl(2).
    execve(2) makes the new program dumpable again."""
    import prctl
    explain.step(f"prctl(PR_SET_DUMPABLE, {int(on)})", "prctl(2)")
    prctl.set_dumpable(on)


def set_identity(uid, gid, groups):
    """Become uid:gid with supplementary `groups` — setgroups(2), setgid(2), setuid(2).
    Groups first: once uid is not 0 we may no longer change them."""
    explain.step(f"setgroups({groups}); setgid({gid}); setuid({uid})", "setuid(2)")
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def set_rlimit(name, soft, hard):
    """One resource limit, e.g. RLIMIT_NOFILE — setrlimit(2)."""
    explain.step(f"setrlimit({name}, {soft}, {hard})", "setrlimit(2)")
    number = getattr(resource, name, None)
    resource.setrlimit(10 if name == "RLIMIT_LOCKS" else number, (soft, hard))  # python lacks LOCKS


def set_oom_score_adj(value):
    """How readily the kernel's OOM killer picks this process — proc(5)."""
    explain.step(f'write("/proc/self/oom_score_adj", "{value}")', "proc(5)")
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def write_sysctl(key, value):
    """A kernel parameter of this container's namespaces, through /proc/sys — sysctl(8)."""
    path = "/proc/sys/" + key.replace(".", "/")
    explain.step(f'write("{path}", "{value}")', "proc(5)")
    with open(path, "w") as f:
        f.write(value)


def reset_signal_dispositions():
    """Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve;
    the container's programs must start with the defaults — signal(7)."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())   # the parent held some back


def find_executable(name, path_env):
    """Look `name` up in PATH as execvp(3) would; None if nothing is there."""
    if "/" in name:
        return name if os.path.exists(name) else None
    for d in (path_env or "").split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def exec_program(path, args, env):
    """Replace this process with the container's program — execve(2)."""
    explain.step(f'execve("{path}", {args})', "execve(2)")
    os.execve(path, args, env)
