"""The one start sequence, parent side. Every door (run, build's RUN, OCI
bundles) comes here: launch() starts, supervise() waits, finish() cleans up.

    0. cgroup         mkdir the container's cgroup and write its limits
                      (and its device allow-list)
    1. channel        a socketpair to talk to the child (sync.py draws the ladder);
                      the container's stdio: pipes or a pty minirun owns
                      (attached_stdio), never the caller's own files
       userns         with --userns=remap: the user namespace and the network,
                      UTS and IPC namespaces its root will own, made by a
                      helper before the fork (make_owned_namespaces)
    2. unshare(PID)   the parent's *next child* will be PID 1 of a new PID namespace
    3. fork           the child runs child.child_main(); it never returns
    4. setns(PID)     the parent's later children are born on the host again
    5. NAMESPACES_READY → put the child in its cgroup (the door began the
                          kernel's wait for that early: cgroups.attach_early),
                          wire its network (bridge, veth, address, ports)
                          while it mounts its root filesystem; an OCI
                          bundle's createRuntime hooks → CONTINUE
    6. PTY_MASTER     with -t, the child sends the terminal's master side
                      (handed off: to the engine's console socket instead)
    7. end-of-file    the child's execve succeeded: the container runs
                      (handed off: CREATED, the child waits for `start`)
    8. supervise      forward signals, relay the pipes or the terminal, waitpid(2)
    9. finish         was it killed for memory? remove the cgroup
"""
import os
import signal
import sys

from minirun.errors import MinirunError
from minirun.linux import explain
from minirun.linux.syscalls import CLONE_NEWPID, join_namespace, setns, unshare
from minirun.record import Factory, Record
from minirun.runtime import sync
from minirun.runtime.child import child_main
from minirun.runtime.spec import ContainerSpec

FORWARDED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
             signal.SIGUSR1, signal.SIGUSR2)


class Running(Record):
    pid: int                  # the container's PID 1, as the host sees it
    master: int | None = None  # the pty's master side, with -t
    pipes: tuple | None = None  # our ends of its stdin, stdout, stderr pipes (stdin may be None)


class Handoff(Record):
    """An OCI `create` (and `exec --detach`): minirun does not stay. The
    child keeps the caller's stdio and `preserve_fds` more, sends its
    terminal to the engine's `console` socket, gets no parent-death signal,
    and — with an `exec_fifo` — waits just before execve until `start`
    opens that FIFO (child.wait_for_start), as runc's exec.fifo works."""
    exec_fifo: int | None = None    # an O_PATH fd of <state dir>/exec.fifo
    console: int | None = None      # a unix socket connected to --console-socket
    preserve_fds: int = 0           # fds 3 .. 3+N-1 go to the container too
    state: dict = Factory(dict)   # the OCI state, for the hooks

    def fds(self):
        return [fd for fd in (self.exec_fifo, self.console) if fd is not None] + \
            list(range(3, 3 + self.preserve_fds))


def attached_stdio(spec_process):
    """The container's fds 0-2 when minirun stays attached: pipes minirun
    owns, relayed to the caller's (none with -t: the pty serves). The
    caller's own files never reach the container, where /proc/self/fd/N
    would reopen them: a log file could be truncated, a directory entered,
    a terminal sent ioctls. Returns (the container's ends, ours)."""
    if spec_process.tty:
        return (None, None, None), None
    stdin = os.pipe() if spec_process.stdin else (None, None)
    stdout, stderr = os.pipe(), os.pipe()
    return (stdin[0], stdout[1], stderr[1]), (stdin[1], stdout[0], stderr[0])


def close_all(fds):
    for fd in fds:
        if fd is not None:
            os.close(fd)


def hold_signals():
    """Keep the signals we forward pending until supervise() can forward
    them: one sent the instant the container starts must not kill minirun."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


def release_signals():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


def launch(spec: ContainerSpec, cgroup=None, stdio=(None, None, None), handoff=None):
    """Steps 0–7: returns once the container's program runs (handed off:
    once it waits for `start`). `stdio`: the container's fds 0-2 (see
    attached_stdio); the caller closes them after."""
    explain.enter("0")
    if cgroup is not None:
        try:
            cgroup.create(spec.cgroup)
            cgroup.apply(spec.cgroup, spec.resources)
        except OSError as e:
            cgroup.destroy(spec.cgroup)
            raise MinirunError(f"cgroup: {e}") from None
        except MinirunError:           # a kernel without what a limit needs (bpf(2)...)
            cgroup.destroy(spec.cgroup)
            raise
    explain.enter("1")
    parent_end, child_end = sync.channel()
    try:
        owned = make_owned_namespaces(spec)
        try:
            pid = fork_into_new_pid_namespace(spec, parent_end, child_end, stdio, cgroup,
                                              owned, handoff)
        finally:
            close_all(owned.values())
            child_end.close()
    except BaseException:         # no child (a namespace to join was not one, say)
        parent_end.close()
        if cgroup is not None:
            cgroup.destroy(spec.cgroup)
        raise
    try:
        sync.expect(parent_end, sync.NAMESPACES_READY)
        explain.enter("5")
        try:
            if cgroup is not None:
                cgroup.add(spec.cgroup, pid)
            if spec.attachment is not None:
                from minirun.network.connect import wire
                wire(spec, pid)
            if handoff is not None:
                from minirun.runtime import hooks
                state = {**handoff.state, "pid": pid}
                hooks.run(spec.hooks.create_runtime, state, "createRuntime")
            sync.send(parent_end, sync.CONTINUE)
        except Exception:
            sync.raise_reported_error(parent_end)  # the child, mounting meanwhile, failed first?
            raise
        explain.enter("6")
        to_us = spec.process.tty and (handoff is None or handoff.console is None)
        master = sync.expect(parent_end, sync.PTY_MASTER) if to_us else None
        explain.enter("7")
        if handoff is None:
            sync.expect_exec(parent_end)
        else:
            sync.expect(parent_end, sync.CREATED)
    except BaseException:
        kill_and_reap(pid)
        if cgroup is not None:
            cgroup.destroy(spec.cgroup)
        raise
    finally:
        parent_end.close()
    return Running(pid, master)


def finish(spec, cgroup):
    """Step 9: whether the kernel's OOM killer struck, then the cgroup goes."""
    explain.enter("9")
    if cgroup is None:
        return False
    oom = cgroup.oom_killed(spec.cgroup)
    try:
        cgroup.destroy(spec.cgroup)
    except OSError as e:     # left for `minirun rm` to retry; the exit status matters more
        sys.stderr.write(f"minirun: warning: cgroup of {spec.id[:12]} not removed yet: {e}\n")
    return oom


def make_owned_namespaces(spec):
    """Step 1, with --userns=remap: {namespace: fd} of the container's user
    namespace, its maps written, and of the namespaces its root must own
    (network, UTS, IPC), made inside it (linux/userns.py). The child joins
    the others first and the user namespace last; {} without remap."""
    joined = spec.namespace_paths.get("user")
    if joined:         # an OCI bundle's, its maps already written: joined last all the same
        fd = os.open(joined, os.O_RDONLY | os.O_CLOEXEC)
        if os.path.samestat(os.fstat(fd), os.stat("/proc/self/ns/user")):
            os.close(fd)
            return {}              # ours already: setns(2) would refuse to re-enter it
        return {"user": fd}
    if spec.userns is None:
        return {}
    from minirun.linux import userns
    owned = tuple(ns for ns in ("net", "uts", "ipc") if ns in spec.namespaces)
    return userns.make_user_namespace(spec.userns.uid_map, spec.userns.gid_map, owned)


def fork_into_new_pid_namespace(spec, parent_end, child_end, stdio, cgroup=None, owned=None,
                                handoff=None):
    """Steps 2–4. unshare(CLONE_NEWPID) moves only the caller's future
    children, so the forked child is PID 1 there while minirun stays a host
    process that can waitpid() it directly. (An OCI bundle may name a PID
    namespace to join instead: setns(2) moves our future children the same way.)"""
    explain.enter("2")
    joined = spec.namespace_paths.get("pid")
    own_pidns = None
    if "pid" in spec.namespaces or joined:
        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY)
    if joined:
        join_namespace(joined, "pid")
    elif own_pidns is not None:
        unshare(CLONE_NEWPID)
    explain.enter("3")
    explain.step("fork()", "fork(2)")
    pid = os.fork()
    if pid == 0:
        explain.be("child")
        parent_end.close()
        child_main(spec, child_end, stdio, cgroup, owned or {}, handoff)  # never returns
    explain.enter("4")
    if own_pidns is not None:
        setns(own_pidns, CLONE_NEWPID)
        os.close(own_pidns)
    return pid


def kill_and_reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def supervise(running: Running, relay_stdin=False):
    """Step 8: forward signals sent to minirun, relay the pty if there is
    one, and return the exit status once the container's PID 1 is gone."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    explain.enter("8")
    pid = running.pid
    for sig in FORWARDED:
        signal.signal(sig, forward)
    release_signals()
    if running.master is not None:
        relay_terminal(running.master, relay_stdin)
    elif running.pipes is not None:
        relay_pipes(*running.pipes, pid=pid)
    return wait_exit_status(pid)


def wait_exit_status(pid):
    """waitpid(2), as a shell reports it: 128+N for death by signal N."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def relay_terminal(master, relay_stdin):
    """Copy between the user's terminal and the container's pty until the
    container side closes. The user's terminal goes raw, so ^C and ^Z reach
    the container's shell as bytes and it does its own job control."""
    import selectors
    from minirun.linux import tty
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = None
    if os.isatty(stdin):
        tty.set_window_size(master, tty.get_window_size(stdin))
        signal.signal(signal.SIGWINCH,
                      lambda *_: tty.set_window_size(master, tty.get_window_size(stdin)))
        if relay_stdin:
            saved = tty.enter_raw_mode(stdin)
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    if relay_stdin:
        sel.register(stdin, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in sel.select():
                if key.fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: every slave fd is closed
                        data = b""
                    if not data:
                        return
                    _write_all(stdout, data)
                else:
                    data = os.read(stdin, 65536)
                    if not data:
                        sel.unregister(stdin)
                        _write_all(master, b"\x04")  # EOF on the pty: ^D
                    else:
                        _write_all(master, data)
    finally:
        if saved is not None:
            tty.restore_mode(stdin, saved)
        os.close(master)


def relay_pipes(stdin, stdout, stderr, pid):
    """Copy our stdin into the container's, its stdout and stderr into ours,
    until both of its output pipes are at end-of-file or process `pid` has
    exited: then what it wrote is drained and the relay ends, even if a
    process it left behind (no PID namespace to take them down, or `exec`'s
    background jobs) still holds the pipes. Input waits in a buffer when the
    container does not read it, so its output is never blocked by ours."""
    import select
    poll = select.poll()                # poll(2): epoll(7) refuses a regular file on our stdin
    targets = {stdout: sys.stdout.fileno(), stderr: sys.stderr.fileno()}
    for fd in targets:
        poll.register(fd, select.POLLIN)
    exited = os.pidfd_open(pid)         # readable once `pid` has exited — pidfd_open(2)
    poll.register(exited, select.POLLIN)
    ours = sys.stdin.fileno()
    reading_ours = stdin is not None    # our stdin, until its end-of-file
    pending = b""
    if stdin is not None:
        os.set_blocking(stdin, False)
        poll.register(ours, select.POLLIN)
    while targets:
        for fd, _events in poll.poll():
            if fd == exited:
                drain(targets)
                break
            if fd in targets:
                data = os.read(fd, 65536)
                if data:
                    try:
                        _write_all(targets[fd], data)
                    except OSError:        # our reader went away: keep draining
                        pass
                else:
                    poll.unregister(fd)
                    os.close(fd)
                    del targets[fd]
            elif fd == stdin:              # the container's stdin can take more
                try:
                    pending = pending[os.write(stdin, pending):]
                except OSError:            # it closed its stdin: drop the rest
                    pending = b""
                if not pending:
                    poll.unregister(stdin)
                    if not reading_ours:
                        os.close(stdin)
                        stdin = None
                    else:
                        poll.register(ours, select.POLLIN)
            else:                          # our stdin has more for the container
                data = os.read(fd, 65536)
                poll.unregister(fd)
                if not data:
                    reading_ours = False
                    if not pending:
                        os.close(stdin)
                        stdin = None
                    continue
                pending += data
                poll.register(stdin, select.POLLOUT)
    if stdin is not None:
        os.close(stdin)
    os.close(exited)


def drain(targets):
    """Copy what is already in each pipe, close it, and forget it."""
    for fd, target in list(targets.items()):
        os.set_blocking(fd, False)
        try:
            while data := os.read(fd, 65536):
                _write_all(target, data)
        except BlockingIOError:
            pass
        except OSError:                    # our reader went away
            pass
        os.close(fd)
        del targets[fd]


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]
