"""The child side of the start sequence: runs in the forked process that
becomes the container, from its first instruction to execve.

It is PID 1 of the new PID namespace (the parent arranged that before the
fork). Every step below is one kernel step, in the order runc and crun take
them; see start.py for the parent's side and sync.py for the conversation.
"""
import fcntl
import os
import signal

from minirun.errors import ExecError, MinirunError
from minirun.linux import caps, explain, fs, net, process, seccomp, tty, userns
from minirun.linux.syscalls import (NAMESPACE_FLAGS, join_namespace, setdomainname, sethostname,
                                     setns, unshare)
from minirun.runtime import sync
from minirun.runtime.spec import ContainerSpec, Mount

# Nodes of a minimal /dev, as Docker makes them: (name, major, minor).
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))


def child_main(spec: ContainerSpec, sock, stdio, cgroup=None, owned=None, handoff=None):
    """Never returns: execs the container's program or exits with an error.
    `stdio` is the container's fds 0-2 as minirun made them (None: /dev/null);
    `cgroup` is the parent's cgroup driver, for mounting /sys/fs/cgroup;
    `owned`, with --userns=remap: fds of the user namespace and of those
    made inside it (start.make_owned_namespaces); `handoff`, for an OCI
    `create`: how to wait for `start` once minirun has gone (start.Handoff)."""
    _reporting_errors(sock, _start_container, spec, sock, stdio, cgroup, owned or {}, handoff)


def join_main(spec: ContainerSpec, process, pid, cgroup, sock, stdio, handoff=None):
    """`minirun exec`, child side: join the running container whose PID 1 is
    `pid` (the parent already made us part of its PID namespace), then become
    `process`. Never returns."""
    _reporting_errors(sock, _join_container, spec, process, pid, cgroup, sock, stdio, handoff)


def _reporting_errors(sock, fn, *args):
    """Exceptions never cross the fork: the parent gets the text, we exit."""
    try:
        fn(*args)
    except ExecError as e:
        sync.send_error(sock, str(e), e.exit_code)
        os._exit(e.exit_code)
    except MinirunError as e:
        sync.send_error(sock, str(e))
    except (OSError, ValueError, OverflowError) as e:
        sync.send_error(sock, f"container start: {e}")
    except BaseException as e:
        try:
            import traceback          # gone if the error came after pivot_root
            detail = traceback.format_exc()
        except ImportError:
            detail = repr(e)
        sync.send_error(sock, "container start failed:\n" + detail)
    os._exit(125)


def leave_the_callers_world(sock, stdio, keep=(), handoff=None):
    """Step 0, before anything else: nothing the caller of minirun had open
    reaches the container but the stdio minirun made for it (or, handed off
    to an engine, the stdio and the fds it asked to preserve), and the
    container has no controlling terminal of the host's. If minirun dies
    the kernel kills us — unless minirun is meant to go (a handoff)."""
    if handoff is None:
        caps.set_parent_death_signal(signal.SIGKILL)
    else:
        keep = [*keep, *handoff.fds()]
    process.close_inherited_fds([sock.fileno(), *keep] + [fd for fd in stdio if fd is not None])
    process.new_session()
    explain.keep_stderr()


def _start_container(spec, sock, stdio, cgroup, owned, handoff):
    # 0. If minirun dies, the kernel kills us, and with PID 1 the whole namespace.
    explain.enter("0")
    leave_the_callers_world(sock, stdio, owned.values(), handoff)

    # 1. Namespaces: join those given by path (--network container:ID) and
    # those made inside the user namespace (--userns=remap: it is joined
    # last, step 3b), then make the new ones (pid was arranged by the parent
    # before the fork). Until 3b we are the host's root, who may mount.
    explain.enter("1")
    for ns, path in spec.namespace_paths.items():
        if ns not in ("pid", "user"):   # pid: the parent joined it; user: last, in 3b
            join_namespace(path, ns)
    for ns, fd in owned.items():
        if ns != "user":
            setns(fd, NAMESPACE_FLAGS[ns])
    flags = 0
    for ns in spec.namespaces:
        if ns not in ("pid", "cgroup", "user") and ns not in owned:
            flags |= NAMESPACE_FLAGS[ns]
    unshare(flags)
    sync.send(sock, sync.NAMESPACES_READY)

    # 2. The root filesystem, still seen from the host's tree of mounts. The
    # parent meanwhile puts us in our cgroup and wires our network: moving a
    # process between v1 cgroups waits for an RCU grace period (~10 ms), time
    # better spent mounting than waiting. Every path inside the container is
    # resolved by the kernel relative to the root's fd (fs.open_in_root).
    explain.enter("2")
    program = read_seccomp_program(spec)          # from the store, which pivot_root hides
    caps.last_cap()                               # from the host's /proc, for step 4
    if handoff is not None:
        from minirun.runtime import hooks         # loaded while python's files are in view
        host_pid = int(os.readlink("/proc/self"))  # for the hooks: still the host's /proc
    if spec.has_own("mount"):
        # Private, or slave where the bundle's rootfsPropagation lets the
        # host's mounts in; the propagation asked for is set in step 3.
        one_way = spec.rootfs.propagation.endswith(("slave", "shared"))
        fs.make_mounts_private(fs.PROPAGATION["rslave" if one_way else "rprivate"])
    if "net" in spec.namespaces:
        net.bring_up_loopback()
    mount_rootfs(spec, owned)
    root = fs.open_root(spec.rootfs.mountpoint)
    cgroup_mounts = mount_volumes(spec, root)
    if spec.standard_mounts:
        mount_pseudo_filesystems(root, spec)
        cgroup_mounts = [Mount("cgroup", "/sys/fs/cgroup", readonly=not spec.privileged)]
    sync.expect(sock, sync.CONTINUE)
    if "cgroup" in spec.namespaces:
        # Only now: the parent has moved us into our cgroup, which becomes
        # the root of the cgroup tree we see, and of the one we mount.
        unshare(NAMESPACE_FLAGS["cgroup"])
    for m in cgroup_mounts:
        mount_cgroupfs(root, cgroup, m.target, m.readonly or "ro" in m.flags)
    if spec.has_own("uts"):
        sethostname(spec.hostname)
        if spec.domainname:
            setdomainname(spec.domainname)
    os.close(fs.open_in_root(root, spec.process.cwd, make="dir"))  # Docker creates a missing WorkingDir
    os.close(root)
    if handoff is not None:     # an OCI bundle's createContainer hooks: our namespaces, the host's /
        handoff.state["pid"] = host_pid
        hooks.run(spec.hooks.create_container, handoff.state, "createContainer")

    # 3. Switch root: from here on, only the container's files exist.
    explain.enter("3")
    if "pivot-root" in spec.skip:
        fs.chroot_into(spec.rootfs.mountpoint)     # teaching only: escapable
    else:
        fs.pivot_into(spec.rootfs.mountpoint)
    if spec.has_own("mount") and spec.rootfs.propagation != "rprivate":
        fs.set_root_propagation(spec.rootfs.propagation)
    if spec.rootfs.readonly:
        fs.remount_root_readonly()
    for key, value in spec.sysctl.items():
        process.write_sysctl(key, value)
    if not spec.privileged:
        for path in spec.masked_paths:
            fs.mask_path(path)
        for path in spec.readonly_paths:
            fs.make_readonly(path)
    terminal = open_terminal(sock, True, handoff) if spec.process.tty else None
    if "user" in owned:
        enter_user_namespace(owned["user"])
    become_program(spec, spec.process, sock, stdio, terminal, program, handoff)


def mount_rootfs(spec, owned):
    """The container's root: the image's layers under the container's upper
    dir (overlayfs), or a directory already made (an OCI bundle's rootfs),
    bound onto itself so that it is a mount point pivot_root(2) accepts."""
    if not spec.rootfs.layers:
        fs.bind_mount(spec.rootfs.mountpoint, spec.rootfs.mountpoint)
        return
    layers = spec.rootfs.layers
    if spec.userns is not None and spec.userns.layers == "idmapped":
        layers = idmapped_layers(spec, owned["user"])
    fs.mount_overlay(layers[::-1], spec.rootfs.upperdir, spec.rootfs.workdir,
                     spec.rootfs.mountpoint)


def idmapped_layers(spec, userns_fd):
    """--userns=remap: each image layer mounted again, in our mount
    namespace only, with its owners shown through the user namespace's
    maps (uid 0 on disk is the container's root); the overlay stacks these."""
    targets = []
    for n, layer in enumerate(spec.rootfs.layers):
        target = os.path.join(spec.bundle, "lower", str(n))
        os.makedirs(target, exist_ok=True)
        userns.idmapped_mount(layer, target, userns_fd)
        targets.append(target)
    return targets


def enter_user_namespace(userns_fd):
    """Step 3b, with --userns=remap: join the container's user namespace,
    last, once every mount is made: from here our capabilities count only
    inside it, and the uid we take next is a uid of the mapped range."""
    explain.enter("3b")
    setns(userns_fd, NAMESPACE_FLAGS["user"])


def _join_container(spec, proc, pid, cgroup, sock, stdio, handoff):
    # The parent made us non-dumpable before the fork: until execve, no
    # process of the container can read our memory or open /proc/<us>/exe,
    # which is the host's python (the CVE-2019-5736 class).
    explain.enter("0")
    leave_the_callers_world(sock, stdio, (), handoff)
    program = read_seccomp_program(spec)
    caps.last_cap()                 # from the host's /proc, for step 4
    if cgroup is not None:
        cgroup.add(spec.cgroup, 0)  # 0: the writing process itself
    # 1. Join the namespaces of the container's PID 1 (the PID namespace was
    # arranged by the parent). The mount namespace last but for the user
    # namespace: joining it also moves our root and working
    # directory to the container's root, after which /proc/<pid> is gone.
    explain.enter("1")
    joined = ("ipc", "uts", "net", "cgroup", "mnt") + (("user",) if spec.userns else ())
    fds = {ns: os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY) for ns in joined}
    for ns, fd in fds.items():
        setns(fd, NAMESPACE_FLAGS["mount" if ns == "mnt" else ns])   # the user namespace last
        os.close(fd)
    terminal = open_terminal(sock, False, handoff) if proc.tty else None
    become_program(spec, proc, sock, stdio, terminal, program, handoff)


def read_seccomp_program(spec):
    """The compiled seccomp filter, read while the store is still in view."""
    if spec.seccomp is None:
        return None
    with open(spec.seccomp.program, "rb") as f:
        return f.read()


def become_program(spec, proc, sock, stdio, terminal, program=None, handoff=None):
    """Steps 4 and 5, shared by a container's first process and by exec."""
    # 4. Who the program runs as, and with which powers.
    explain.enter("4")
    if program is not None and not spec.no_new_privileges:
        # Without no_new_privs, loading a filter takes CAP_SYS_ADMIN: load it
        # now, while we hold it (as runc does); the profile must then allow
        # what the steps below call.
        seccomp.load(program, spec.seccomp.rules, spec.seccomp.profile)
    for r in proc.rlimits:
        process.set_rlimit(r.type, r.soft, r.hard)
    if proc.oom_score_adj is not None:
        process.set_oom_score_adj(proc.oom_score_adj)
    if proc.user.umask is not None:
        os.umask(proc.user.umask)
    sets = proc.capabilities
    keep = {caps.cap_number(c) for c in (spec.capabilities if sets is None else sets.bounding)}
    if "capabilities" not in spec.skip:
        caps.drop_bounding_set(keep)
    if sets is not None:
        caps.keep_capabilities_across_setuid()
    user = proc.user
    try:
        process.set_identity(user.uid, user.gid, [user.gid] + user.additional_gids)
    except OSError as e:
        mapped = "" if spec.userns is None else " (is it mapped in the container's user namespace?)"
        raise MinirunError(f"cannot become uid {user.uid} gid {user.gid}: {e.strerror}{mapped}") \
            from None
    if sets is not None:
        def numbers(names):
            return {caps.cap_number(c) for c in names}
        caps.set_capability_sets(numbers(sets.effective), numbers(sets.permitted),
                                 numbers(sets.inheritable), numbers(sets.ambient))
    elif user.uid == 0 and "capabilities" not in spec.skip:
        caps.limit_capabilities(keep)
    if spec.no_new_privileges:
        caps.set_no_new_privs()
    if handoff is None:
        caps.set_parent_death_signal(signal.SIGKILL)  # a change of uid cleared it
    try:
        os.chdir(proc.cwd)
    except OSError as e:
        raise ExecError(f"chdir to {proc.cwd}: {e.strerror}", 126) from None
    fs.check_cwd_inside_root()

    # 5. The program itself.
    explain.enter("5")
    env = proc.env
    args = proc.args
    path = process.find_executable(args[0], env.get("PATH"))
    if path is None:
        raise ExecError(f'exec: "{args[0]}": executable file not found in $PATH', 127)
    if handoff is not None and handoff.exec_fifo is not None:
        from minirun.runtime import hooks         # loaded in step 2, before pivot_root
        wait_for_start(sock, handoff)
        hooks.run(spec.hooks.start_container, {**handoff.state, "status": "running"},
                  "startContainer")
    process.reset_signal_dispositions()
    attach_stdio(stdio, terminal)
    if program is not None and spec.no_new_privileges:
        # Last before execve, after no_new_privs, as runc does: from here on
        # the kernel checks every system call against the profile.
        seccomp.load(program, spec.seccomp.rules, spec.seccomp.profile)
    try:
        process.exec_program(path, args, env)
    except PermissionError:
        raise ExecError(f'exec: "{args[0]}": permission denied', 126)
    except OSError as e:
        raise ExecError(f'exec: "{args[0]}": {e.strerror}', 126)


def wait_for_start(sock, handoff):
    """An OCI `create` ends here: tell minirun we are ready (it writes the
    state and exits), then block opening the exec FIFO for writing until
    `start` opens it for reading — fifo(7). The byte we write tells `start`
    we are on our way; everything that could fail has been done."""
    sync.send(sock, sync.CREATED)
    explain.step("open(exec.fifo, O_WRONLY): wait for `start`", "fifo(7)")
    fd = os.open(fs.fd_path(handoff.exec_fifo), os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(handoff.exec_fifo)


def mount_volumes(spec, root):
    """-v, --tmpfs and the /etc files minirun writes, each target resolved
    inside the root and mounted through its fd (fs.open_in_root); for an
    OCI bundle, every mount it lists, in its order. cgroup mounts wait
    until we are in our cgroup namespace: returned for later."""
    later = []
    for target, source in spec.etc_files.items():
        fs.bind_mount_in_root(root, source, target)
    for m in spec.mounts:
        if m.type == "cgroup":
            later.append(m)
        elif m.type == "bind" and not m.flags:
            fs.bind_mount_in_root(root, m.source, m.target, readonly=m.readonly)
        elif m.type == "tmpfs" and not m.flags:
            fd = fs.open_in_root(root, m.target, make="dir")
            try:
                fs.mount_tmpfs(fs.fd_path(fd), m.options or "mode=1777")
            finally:
                os.close(fd)
        else:
            mount_by_options(root, m)
    if not spec.standard_mounts and any(m.target.rstrip("/") == "/dev" and m.type != "bind"
                                        for m in spec.mounts):
        populate_dev(root, spec)
    return later


def mount_by_options(root, m):
    """A mount as an OCI bundle writes it: a type and options by name. The
    new mount is opened again to adjust it: the first fd still leads to
    what was beneath (and a bind must still be the source we mounted)."""
    kind = "file" if m.type == "bind" and not os.path.isdir(m.source) else "dir"
    fd = fs.open_in_root(root, m.target, make=kind)
    try:
        source = m.source if m.type == "bind" else (m.source or m.type)
        fs.mount_with_options(source, fs.fd_path(fd), m.type, m.flags, m.options)
    finally:
        os.close(fd)
    fd = fs.open_in_root(root, m.target)
    try:
        if m.type == "bind":
            fs.check_mounted_source(fd, m.source, m.target)
        fs.adjust_mount(fs.fd_path(fd), m.type, m.flags)
    finally:
        os.close(fd)


def mount_pseudo_filesystems(root, spec):
    """/proc of the new PID namespace, /sys, and a minimal /dev with the
    nodes --device and --privileged add."""
    uid, gid = spec.userns.root if spec.userns else (0, 0)    # the container's root, outside
    owner = f",uid={uid},gid={gid}"
    for name, mount in (("proc", fs.mount_proc),
                        ("sys", lambda t: fs.mount_sysfs(t, readonly=not spec.privileged)),
                        ("dev", lambda t: fs.mount_tmpfs(t, "mode=755,size=65536k" + owner,
                                                         fs.MS_NOSUID))):
        if name in spec.skip:            # --skip proc: teaching only
            continue
        fd = fs.open_in_root(root, name, make="dir")
        try:
            mount(fs.fd_path(fd))
        finally:
            os.close(fd)
    populate_dev(root, spec)
    devfd = fs.open_in_root(root, "dev")
    dev = fs.fd_path(devfd)
    for d in ("pts", "shm", "mqueue"):
        os.mkdir(os.path.join(dev, d))
    fs.mount_devpts(os.path.join(dev, "pts"), tty_gid=gid + 5)
    fs.mount_tmpfs(os.path.join(dev, "shm"), "mode=1777,size=65536k" + owner,
                   fs.MS_NOSUID | fs.MS_NODEV | fs.MS_NOEXEC)
    fs.mount_mqueue(os.path.join(dev, "mqueue"))
    if spec.userns is not None:
        for name in os.listdir(dev):
            if name not in ("pts", "shm", "mqueue"):
                os.chown(os.path.join(dev, name), uid, gid, follow_symlinks=False)
    os.close(devfd)


def populate_dev(root, spec):
    """A fresh /dev tmpfs gets what every container has — null, zero, full,
    random, urandom, tty, the /proc/self/fd links, a console to bind a
    terminal on — and the devices the spec names (--device, an OCI
    bundle's linux.devices)."""
    devfd = fs.open_in_root(root, "dev")      # the fresh tmpfs: only what we put there
    dev = fs.fd_path(devfd)
    for name, major, minor in DEVICES:
        if not os.path.lexists(os.path.join(dev, name)):
            fs.make_device(os.path.join(dev, name), "c", major, minor)
    for name, target in DEV_LINKS:
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(target, os.path.join(dev, name))
    open(os.path.join(dev, "console"), "a").close()
    os.close(devfd)
    for d in spec.devices:
        parent = fs.open_in_root(root, os.path.dirname(d.path), make="dir")
        try:
            name = os.path.basename(d.path)
            if not os.path.lexists(os.path.join(fs.fd_path(parent), name)):
                fs.make_device(name, d.type, d.major, d.minor, d.mode, dir_fd=parent,
                               owner=(d.uid, d.gid))
        finally:
            os.close(parent)


def mount_cgroupfs(root, driver, target, readonly):
    """/sys/fs/cgroup as Docker gives it: the container's own cgroup as the
    root of each hierarchy (the cgroup namespace sees to that). The target
    lives in the sysfs just mounted: the kernel's, not the image's."""
    if driver is None:
        return
    flags = fs.MS_NOSUID | fs.MS_NODEV | fs.MS_NOEXEC | (fs.MS_RDONLY if readonly else 0)
    try:
        fd = fs.open_in_root(root, target)
    except FileNotFoundError:
        return
    try:
        if driver.version == 2:
            fs.mount("cgroup2", fs.fd_path(fd), "cgroup2", flags)
            return
        fs.mount_tmpfs(fs.fd_path(fd), "mode=755", fs.MS_NOSUID | fs.MS_NODEV | fs.MS_NOEXEC)
    finally:
        os.close(fd)
    fd = fs.open_in_root(root, target)               # now the tmpfs on top
    target = fs.fd_path(fd)
    try:
        hierarchies = {}
        for controller, mountpoint in driver.mounts.items():
            hierarchies.setdefault(mountpoint, []).append(controller)
        for mountpoint, controllers in sorted(hierarchies.items()):
            d = os.path.join(target, os.path.basename(mountpoint))
            os.mkdir(d)
            fs.mount("cgroup", d, "cgroup", flags, ",".join(sorted(controllers)))
        if readonly:
            fs.mount(None, target, None, fs.MS_REMOUNT | fs.MS_BIND | fs.MS_RDONLY | flags)
    finally:
        os.close(fd)


def open_terminal(sock, console, handoff=None):
    """-t: a pty from the container's own devpts; the master goes to the
    parent, or, handed off to an engine, over the console socket it gave
    (SCM_RIGHTS, with the pty's name, as runc sends it); for PID 1 the
    slave is also /dev/console."""
    master, slave = tty.open_pty()
    if console:
        fs.bind_mount(os.ttyname(slave), "/dev/console")
    if handoff is not None and handoff.console is not None:
        import socket
        explain.step("sendmsg(console socket, SCM_RIGHTS [pty master])", "unix(7)")
        socket.send_fds(socket.socket(fileno=handoff.console), [os.ttyname(slave).encode()],
                        [master])
    else:
        sync.send(sock, sync.PTY_MASTER, fd=master)
    os.close(master)
    return slave


def attach_stdio(stdio, terminal):
    """Give the program its fds 0, 1 and 2: the pty with -t, else the pipes
    minirun made (stdin /dev/null when there is none) — dup2(2)."""
    if terminal is not None:
        tty.make_controlling_terminal(terminal)
        fds = (terminal,) * 3
    else:
        fds = [fd if fd is not None else os.open("/dev/null", os.O_RDONLY) for fd in stdio]
    fds = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in fds]  # out of 0-2's way first
    for n, fd in enumerate(fds):
        os.dup2(fd, n)
