"""The child side of the start sequence: runs in the forked process that
becomes the container, from its first instruction to execve.

It is PID 1 of the new PID namespace (the parent arranged that before the
fork). Every step below is one kernel step, in the order runc and crun take
them; see start.py for the parent's side and sync.py for the conversation.
"""
import os
import signal

from minirun.errors import ExecError, MinirunError
from minirun.linux import caps, explain, fs, net, process, tty
from minirun.linux.syscalls import NAMESPACE_FLAGS, setns, unshare
from minirun.runtime import init, sync
from minirun.runtime.spec import ContainerSpec

# Nodes of a minimal /dev, as Docker makes them: (name, major, minor).
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))


def child_main(spec: ContainerSpec, sock, cgroup=None):
    """Never returns: execs the container's program or exits with an error.
    `cgroup` is the parent's cgroup driver, for mounting /sys/fs/cgroup."""
    _reporting_errors(sock, _start_container, spec, sock, cgroup)


def join_main(spec: ContainerSpec, process, pid, cgroup, sock):
    """`minirun exec`, child side: join the running container whose PID 1 is
    `pid` (the parent already made us part of its PID namespace), then become
    `process`. Never returns."""
    _reporting_errors(sock, _join_container, spec, process, pid, cgroup, sock)


def _reporting_errors(sock, fn, *args):
    """Exceptions never cross the fork: the parent gets the text, we exit."""
    try:
        fn(*args)
    except ExecError as e:
        sync.send_error(sock, str(e), e.exit_code)
        os._exit(e.exit_code)
    except MinirunError as e:
        sync.send_error(sock, str(e))
    except OSError as e:
        sync.send_error(sock, f"container start: {e}")
    except BaseException:
        import traceback
        sync.send_error(sock, "container start failed:\n" + traceback.format_exc())
    os._exit(125)


def _start_container(spec, sock, cgroup):
    # If minirun dies, the kernel kills us, and with PID 1 the whole namespace.
    caps.set_parent_death_signal(signal.SIGKILL)
    explain.keep_stderr()
    stdin = os.open("/dev/null", os.O_RDONLY) if not spec.process.stdin else None

    # 1. Namespaces: join those given by path (--network container:ID), then
    # make the new ones (pid was arranged by the parent before the fork).
    for ns, path in spec.namespace_paths.items():
        fd = os.open(path, os.O_RDONLY)
        setns(fd, NAMESPACE_FLAGS[ns])
        os.close(fd)
    flags = 0
    for ns in spec.namespaces:
        if ns not in ("pid", "cgroup"):
            flags |= NAMESPACE_FLAGS[ns]
    unshare(flags)
    sync.send(sock, sync.NAMESPACES_READY)

    # 2. The root filesystem, still seen from the host's tree of mounts. The
    # parent meanwhile puts us in our cgroup and wires our network: moving a
    # process between v1 cgroups waits for an RCU grace period (~10 ms), time
    # better spent mounting than waiting.
    fs.make_mounts_private()
    if "net" in spec.namespaces:
        net.bring_up_loopback()
    rootfs = spec.rootfs.mountpoint
    fs.mount_overlay(spec.rootfs.layers[::-1], spec.rootfs.upperdir, spec.rootfs.workdir, rootfs)
    mount_volumes(spec, rootfs)
    mount_pseudo_filesystems(rootfs, privileged=spec.privileged)
    sync.expect(sock, sync.CONTINUE)
    if "cgroup" in spec.namespaces:
        # Only now: the parent has moved us into our cgroup, which becomes
        # the root of the cgroup tree we see, and of the one we mount.
        unshare(NAMESPACE_FLAGS["cgroup"])
    mount_cgroupfs(rootfs, cgroup, readonly=not spec.privileged)
    if "uts" in spec.namespaces:
        process.set_hostname(spec.hostname)
    workdir = fs.secure_join(rootfs, spec.process.cwd)
    os.makedirs(workdir, exist_ok=True)  # Docker creates a missing WorkingDir

    # 3. Switch root: from here on, only the container's files exist.
    fs.pivot_into(rootfs)
    if spec.rootfs.readonly:
        fs.remount_root_readonly()
    if not spec.privileged:
        for path in spec.masked_paths:
            fs.mask_path(path)
        for path in spec.readonly_paths:
            fs.make_readonly(path)
    terminal = open_terminal(sock, console=True) if spec.process.tty else None
    become_program(spec, spec.process, sock, stdin, terminal)


def _join_container(spec, proc, pid, cgroup, sock):
    caps.set_parent_death_signal(signal.SIGKILL)
    explain.keep_stderr()
    stdin = os.open("/dev/null", os.O_RDONLY) if not proc.stdin else None
    if cgroup is not None:
        cgroup.add(spec.id, 0)      # 0: the writing process itself
    # The mount namespace last: joining it also moves our root and working
    # directory to the container's root, after which /proc/<pid> is gone.
    fds = {ns: os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY)
           for ns in ("ipc", "uts", "net", "cgroup", "mnt")}
    for ns, fd in fds.items():
        setns(fd, NAMESPACE_FLAGS["mount" if ns == "mnt" else ns])
        os.close(fd)
    terminal = open_terminal(sock, console=False) if proc.tty else None
    become_program(spec, proc, sock, stdin, terminal)


def become_program(spec, proc, sock, stdin, terminal):
    """Steps 4 and 5, shared by a container's first process and by exec."""
    # 4. Who the program runs as, and with which powers.
    keep = {caps.cap_number(c) for c in spec.capabilities}
    caps.drop_bounding_set(keep)
    user = proc.user
    process.set_identity(user.uid, user.gid, [user.gid] + user.additional_gids)
    if user.uid == 0:
        caps.limit_capabilities(keep)
    if spec.no_new_privileges:
        caps.set_no_new_privs()
    caps.set_parent_death_signal(signal.SIGKILL)  # a change of uid cleared it
    try:
        os.chdir(proc.cwd)
    except OSError as e:
        raise ExecError(f"chdir to {proc.cwd}: {e.strerror}", 126) from None

    # 5. The program itself.
    env = proc.env
    args = proc.args
    path = process.find_executable(args[0], env.get("PATH"))
    if path is None:
        raise ExecError(f'exec: "{args[0]}": executable file not found in $PATH', 127)
    process.reset_signal_dispositions()
    if proc.init:
        init.fork_program(close_in_init=[sock] + [fd for fd in (stdin, terminal) if fd is not None])
    attach_stdio(stdin, terminal)
    try:
        process.exec_program(path, args, env)
    except PermissionError:
        raise ExecError(f'exec: "{args[0]}": permission denied', 126)
    except OSError as e:
        raise ExecError(f'exec: "{args[0]}": {e.strerror}', 126)


def mount_volumes(spec, rootfs):
    """-v, --tmpfs and the /etc files minirun writes, onto paths resolved
    inside the rootfs so a symlink in the image cannot point them at the host."""
    for target, source in spec.etc_files.items():
        dest = fs.secure_join(rootfs, target)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.exists(dest):
            open(dest, "a").close()
        fs.bind_mount(source, dest)
    for m in spec.mounts:
        dest = fs.secure_join(rootfs, m.target)
        if m.type == "bind" and not os.path.isdir(m.source):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if not os.path.exists(dest):
                open(dest, "a").close()
        else:
            os.makedirs(dest, exist_ok=True)
        if m.type == "bind":
            fs.bind_mount(m.source, dest, readonly=m.readonly)
        else:
            fs.mount_tmpfs(dest, m.options or "mode=1777")


def mount_pseudo_filesystems(rootfs, privileged):
    """/proc of the new PID namespace, /sys, and a minimal /dev."""
    for d in ("proc", "sys", "dev"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    fs.mount_proc(os.path.join(rootfs, "proc"))
    fs.mount_sysfs(os.path.join(rootfs, "sys"), readonly=not privileged)
    dev = os.path.join(rootfs, "dev")
    fs.mount_tmpfs(dev, "mode=755,size=65536k", fs.MS_NOSUID)
    for name, major, minor in DEVICES:
        fs.make_device(os.path.join(dev, name), major, minor)
    for name, target in DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    for d in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, d))
    fs.mount_devpts(os.path.join(dev, "pts"))
    fs.mount_tmpfs(os.path.join(dev, "shm"), "mode=1777,size=65536k", fs.MS_NOSUID | fs.MS_NODEV | fs.MS_NOEXEC)
    fs.mount_mqueue(os.path.join(dev, "mqueue"))
    open(os.path.join(dev, "console"), "w").close()


def mount_cgroupfs(rootfs, driver, readonly):
    """/sys/fs/cgroup as Docker gives it: the container's own cgroup as the
    root of each hierarchy (the cgroup namespace sees to that)."""
    target = os.path.join(rootfs, "sys/fs/cgroup")
    if driver is None or not os.path.isdir(target):
        return
    flags = fs.MS_NOSUID | fs.MS_NODEV | fs.MS_NOEXEC | (fs.MS_RDONLY if readonly else 0)
    if driver.version == 2:
        fs.mount("cgroup2", target, "cgroup2", flags)
        return
    fs.mount_tmpfs(target, "mode=755", fs.MS_NOSUID | fs.MS_NODEV | fs.MS_NOEXEC)
    hierarchies = {}
    for controller, mountpoint in driver.mounts.items():
        hierarchies.setdefault(mountpoint, []).append(controller)
    for mountpoint, controllers in sorted(hierarchies.items()):
        d = os.path.join(target, os.path.basename(mountpoint))
        os.mkdir(d)
        fs.mount("cgroup", d, "cgroup", flags, ",".join(sorted(controllers)))
    if readonly:
        fs.mount(None, target, None, fs.MS_REMOUNT | fs.MS_BIND | fs.MS_RDONLY | flags)


def open_terminal(sock, console):
    """-t: a pty from the container's own devpts; the master goes to the
    parent (as runc's --console-socket does); for PID 1 the slave is also
    /dev/console."""
    master, slave = tty.open_pty()
    if console:
        fs.bind_mount(os.ttyname(slave), "/dev/console")
    sync.send(sock, sync.PTY_MASTER, fd=master)
    os.close(master)
    return slave


def attach_stdio(stdin, terminal):
    """Give the program its fds 0, 1 and 2."""
    if terminal is not None:
        tty.make_controlling_terminal(terminal)
        for fd in (0, 1, 2):
            os.dup2(terminal, fd)
        os.close(terminal)
    elif stdin is not None:
        os.dup2(stdin, 0)
        os.close(stdin)
