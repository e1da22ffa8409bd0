"""`minirun exec`, parent side: a new process in a running container.

Nothing is created: the process joins what the container's PID 1 already
has — its namespaces (setns(2) on /proc/PID/ns/*), its cgroup, its root —
and then drops to the container's user, capabilities and environment, as
the first process did (child.become_program).
"""
import os

from minirun.linux import explain
from minirun.linux.syscalls import CLONE_NEWPID, setns
from minirun.runtime import container, lifecycle, state as statefile, sync
from minirun.runtime.options import parse_env
from minirun.runtime.spec import Process
from minirun.linux.process import set_dumpable
from minirun.runtime.start import (
    Running, attached_stdio, close_all, hold_signals, kill_and_reap, release_signals, supervise)
from minirun.runtime.users import resolve_user
from minirun.errors import UsageError


def refuse_chrooted(spec):
    """A container started with --skip pivot-root (or mount-namespace) was
    only chroot(2)ed: its mount namespace still has the host's / as its
    root, and setns(2) into it would put the new process there — on the
    host's files, with the container's name on it."""
    if "pivot-root" in spec.skip:
        raise UsageError(f"container {spec.id[:12]} was started with --skip pivot-root: exec "
                         f"would join its mount namespace at the host's root, which chroot "
                         f"leaves there; refused")


def exec_in(store, ref, command, env=(), workdir=None, user=None, tty=False, interactive=False):
    lifecycle.check_input_is_a_terminal(tty, interactive)
    cid, bundle, st = lifecycle.resolve(store, ref)
    if statefile.status(st)[0] != "running":
        raise UsageError(f"container {cid[:12]} is not running: start it before exec")
    spec = container.load_spec(bundle)
    refuse_chrooted(spec)
    pid = st["pid"]
    root = f"/proc/{pid}/root"   # the container's files as they are now, upper dir included
    proc = Process(
        args=list(command),
        env={**spec.process.env, **parse_env(list(env), [])},
        cwd=workdir or spec.process.cwd,
        user=resolve_user(user, [root]) if user else spec.process.user,
        tty=tty, stdin=interactive)
    if not proc.args:
        raise UsageError("exec needs a command")
    cgroup = lifecycle.cgroup_driver()

    parent_end, child_end = sync.channel()
    stdio, pipes = attached_stdio(proc)
    hold_signals()
    try:
        child = fork_into_pid_namespace_of(pid, spec, proc, cgroup, parent_end, child_end, stdio)
    finally:
        child_end.close()
        close_all(stdio)
    try:
        master = sync.expect(parent_end, sync.PTY_MASTER) if tty else None
        sync.expect_exec(parent_end)
    except BaseException:
        kill_and_reap(child)
        release_signals()
        close_all(pipes or ())
        raise
    finally:
        parent_end.close()
    return supervise(Running(child, master, pipes), relay_stdin=interactive)


def fork_into_pid_namespace_of(pid, spec, proc, cgroup, parent_end, child_end, stdio,
                               handoff=None):
    """setns(CLONE_NEWPID) moves only our future children, as unshare did for
    the container's PID 1; then fork, then come back. The child is born
    non-dumpable: it is a host process (the host's python) living in the
    container's PID namespace until its execve, and the container's
    processes must not read its memory or open its /proc/PID/exe."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY)
    theirs = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
    set_dumpable(False)
    setns(theirs, CLONE_NEWPID)
    explain.step("fork()", "fork(2)")
    child = os.fork()
    if child == 0:
        explain.be("child")
        parent_end.close()
        from minirun.runtime.child import join_main
        join_main(spec, proc, pid, cgroup, child_end, stdio, handoff)   # never returns
    setns(own, CLONE_NEWPID)
    set_dumpable(True)
    os.close(own)
    os.close(theirs)
    return child
