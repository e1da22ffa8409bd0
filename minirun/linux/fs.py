"""Filesystem steps of a container's start: overlay, pseudo-filesystems,
bind mounts, device nodes and the switch of root. Each is one kernel step.

The paths given here are already decided by the caller; these functions
attach, remount or detach, and nothing else.
"""
import errno
import os
import stat

from minirun.errors import MinirunError
from minirun.linux import explain
from minirun.linux.syscalls import (
    MNT_DETACH, MS_BIND, MS_DIRSYNC, MS_MANDLOCK, MS_NOATIME, MS_NODEV, MS_NODIRATIME,
    MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT, MS_SHARED,
    MS_SLAVE, MS_STRICTATIME, MS_SYNCHRONOUS, MS_UNBINDABLE, RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS, chroot, mount, openat2, pivot_root, umount)

# Mount options by the names mount(8) and OCI bundles use: name → (flag, set
# it or clear it). What is not here is filesystem data ("size=64m", "mode=755").
MOUNT_FLAGS = {
    "ro": (MS_RDONLY, True), "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True), "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True), "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True), "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True), "async": (MS_SYNCHRONOUS, False),
    "dirsync": (MS_DIRSYNC, True), "mand": (MS_MANDLOCK, True), "nomand": (MS_MANDLOCK, False),
    "noatime": (MS_NOATIME, True), "atime": (MS_NOATIME, False),
    "nodiratime": (MS_NODIRATIME, True), "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True), "norelatime": (MS_RELATIME, False),
    "strictatime": (MS_STRICTATIME, True), "nostrictatime": (MS_STRICTATIME, False),
    "bind": (MS_BIND, True), "rbind": (MS_BIND | MS_REC, True),
}
# How mount events travel between this mount and its peers — mount_namespaces(7).
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}


def mount_flags(names):
    """Option names → (flags, [propagation flags], data for the filesystem)."""
    flags, propagation, data = 0, [], []
    for name in names:
        if name in MOUNT_FLAGS:
            bit, on = MOUNT_FLAGS[name]
            flags = flags | bit if on else flags & ~bit
        elif name in PROPAGATION:
            propagation.append(PROPAGATION[name])
        else:
            data.append(name)
    return flags, propagation, ",".join(data)


def mount_with_options(source, target, fstype, names, data=""):
    """mount(2) with options given by name, as an OCI bundle lists them.
    For a bind mount this only attaches it: its flags and any propagation
    are set by adjust_mount(), on the new mount."""
    flags, _, extra = mount_flags(names)
    data = ",".join(d for d in (data, extra) if d)
    if fstype == "bind":
        mount(source, target, None, flags & (MS_BIND | MS_REC) or MS_BIND)
    else:
        mount(source, target, fstype, flags, data or None)


def adjust_mount(target, fstype, names):
    """The second half of mount_with_options, on the mount now at `target`:
    a bind mount ignores flags when it is made, so they take a remount;
    a propagation type is a mount(2) call of its own."""
    flags, propagation, _ = mount_flags(names)
    rest = flags & ~(MS_BIND | MS_REC)
    if fstype == "bind" and rest:
        mount(None, target, None, MS_BIND | MS_REMOUNT | rest)
    for p in propagation:
        mount(None, target, None, p)


def make_mounts_private(propagation=MS_REC | MS_PRIVATE):
    """Stop mount events propagating from this namespace to the host's —
    mount(2) with MS_PRIVATE, see mount_namespaces(7). (MS_SLAVE lets the
    host's own mounts still reach us, one way.)"""
    mount(None, "/", None, propagation)


def set_root_propagation(name):
    """An OCI bundle's rootfsPropagation, applied to the container's own `/`
    once pivot_root has made it so — mount(2), mount_namespaces(7). The tree
    below was made private or slave before: "shared" is shared among the
    container's own mounts (and still a slave of the host's), never a way
    for its mounts to reach the host."""
    mount(None, "/", None, PROPAGATION[name])


def mount_overlay(lowerdirs, upperdir, workdir, target):
    """Stack read-only layers under one writable dir — overlayfs, see mount(8).

    `lowerdirs` are top-first, as overlayfs wants them. The whole option
    string must fit in one page (4096 bytes): when the layers share a
    directory (the store's short links, l/<12 hex>), we chdir there and name
    them relative to it, as Docker's overlay2 driver does — 100 layers fit.
    """
    parents = {os.path.dirname(d) for d in lowerdirs}
    if len(parents) == 1 and len(lowerdirs) > 1:
        os.chdir(parents.pop())
        lowerdirs = [os.path.basename(d) for d in lowerdirs]
    data = f"lowerdir={':'.join(lowerdirs)},upperdir={upperdir},workdir={workdir}"
    mount("overlay", target, "overlay", 0, data)


def bind_mount(source, target, readonly=False):
    """Make `source` visible at `target` too — mount(2) with MS_BIND."""
    mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        # A bind mount ignores MS_RDONLY at creation; it takes a remount.
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


def mount_tmpfs(target, data="mode=755", flags=MS_NOSUID | MS_NODEV):
    """A fresh in-memory filesystem — tmpfs(5)."""
    mount("tmpfs", target, "tmpfs", flags, data)


def mount_proc(target):
    """This PID namespace's view of processes — proc(5)."""
    mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_sysfs(target, readonly=True):
    """The kernel's device tree, showing this network namespace's devices — sysfs(5)."""
    mount("sysfs", target, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | (MS_RDONLY if readonly else 0))


def mount_devpts(target, tty_gid=5):
    """A private instance of pseudo-terminals with its own ptmx — pts(4)."""
    mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC,
          f"newinstance,ptmxmode=0666,mode=0620,gid={tty_gid}")


def mount_mqueue(target):
    """POSIX message queues of this IPC namespace — mq_overview(7)."""
    mount("mqueue", target, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)


NODE_TYPES = {"c": ("CHR", stat.S_IFCHR), "b": ("BLK", stat.S_IFBLK), "p": ("IFO", stat.S_IFIFO)}


def make_device(path, kind, major, minor, mode=0o666, dir_fd=None, owner=(0, 0)):
    """Create a character (c) or block (b) device node, or a FIFO (p) —
    mknod(2)."""
    name, fmt = NODE_TYPES[kind]
    explain.step(f'mknod("{path}", S_IF{name}|{mode:o}, makedev({major}, {minor}))', "mknod(2)")
    os.mknod(path, fmt | mode, os.makedev(major, minor) if kind != "p" else 0, dir_fd=dir_fd)
    os.chmod(path, mode, dir_fd=dir_fd)  # mknod's mode is filtered by the umask
    if owner != (0, 0):
        os.chown(path, *owner, dir_fd=dir_fd)


def pivot_into(new_root):
    """Make `new_root` this namespace's `/` and detach the old root entirely.

    The pivot_root(".", ".") idiom from runc: after it the old root is
    stacked on top of the new one at "/", so one lazy unmount of "." removes
    every host mount from the container's view — pivot_root(2).
    """
    os.chdir(new_root)
    pivot_root(".", ".")
    umount(".", MNT_DETACH)
    os.chdir("/")


def chroot_into(new_root):
    """`--skip pivot-root`, for teaching only: what pivot_into() replaces.
    chroot(2) moves this process's `/` but leaves every host mount in its
    mount namespace, so a process with CAP_SYS_CHROOT can climb back out
    (chroot into a subdirectory, then chdir("..") past the old root)."""
    os.chdir(new_root)
    chroot(".")
    os.chdir("/")


def detach(target):
    """Lazily unmount `target` and every mount below it, if it is a mount
    point — umount2(2) with MNT_DETACH."""
    if is_mount_point(target):
        umount(target, MNT_DETACH)


def is_mount_point(path):
    """Whether something is mounted on `path`, as our mount table lists it —
    proc_pid_mountinfo(5). (os.path.ismount misses a directory bound onto
    itself: same device as its parent.)"""
    escaped = os.path.realpath(path).replace("\\", "\\134").replace(" ", "\\040")
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ", 5)[4] == escaped for line in f)


def mask_path(path):
    """Hide `path`: /dev/null over a file, an empty read-only tmpfs over a directory."""
    if os.path.isdir(path):
        mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
    elif os.path.exists(path):
        mount("/dev/null", path, None, MS_BIND)


def make_readonly(path):
    """Bind `path` onto itself and remount that read-only — mount(2)."""
    if os.path.exists(path):
        mount(path, path, None, MS_BIND | MS_REC)
        mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def remount_root_readonly():
    """--read-only: the container's `/` refuses writes — mount(2) with MS_REMOUNT."""
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)


# --- paths inside the container's root, never outside it --------------------------------

IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


def open_root(path):
    """An O_PATH descriptor for the container's root: every path inside the
    container is then resolved relative to it, by the kernel."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def fd_path(fd):
    """The /proc/self/fd/N name of an open file: mount(2) through it reaches
    exactly that file, whatever happens to its path meanwhile."""
    return f"/proc/self/fd/{fd}"


def open_in_root(root_fd, path, make=None, _hops=0):
    """Open `path` as if `root_fd` were `/` — openat2(2) with RESOLVE_IN_ROOT:
    symlinks and `..` resolve inside the container's tree, never above it,
    even if a process in a shared volume swaps a directory for a symlink
    while we look (the CVE-2021-30465 race). With make="dir" or "file",
    what is missing is created on the way, each step relative to a
    directory already opened inside the root (a dangling symlink on the way
    is followed, inside the root, to where its target is made).
    Returns an O_PATH fd."""
    rel = path.strip("/")
    try:
        return openat2(root_fd, rel or ".", os.O_PATH, IN_ROOT)
    except FileNotFoundError:
        if make is None:
            raise
    parent, name = os.path.split(rel)
    parent_fd = open_in_root(root_fd, parent, make="dir", _hops=_hops)
    try:
        if make == "dir":
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        else:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                             dir_fd=parent_fd))
    except FileExistsError:
        try:
            link = os.readlink(name, dir_fd=parent_fd)
        except OSError:
            link = None      # made meanwhile: openat2 below takes it
        if link is not None:
            if _hops >= 40:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
            return open_in_root(root_fd, os.path.join("/" + parent, link), make, _hops + 1)
    finally:
        os.close(parent_fd)
    return openat2(root_fd, rel, os.O_PATH, IN_ROOT)


def bind_mount_in_root(root_fd, source, target, readonly=False):
    """-v SOURCE:TARGET with TARGET resolved inside the root and mounted
    through its fd. The read-only remount needs the new mount itself, so
    the target is opened again and must be the source we just mounted."""
    fd = open_in_root(root_fd, target, make="dir" if os.path.isdir(source) else "file")
    try:
        mount(source, fd_path(fd), None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    if readonly:
        fd = open_in_root(root_fd, target)
        try:
            check_mounted_source(fd, source, target)
            mount(None, fd_path(fd), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
        finally:
            os.close(fd)


def check_mounted_source(fd, source, target):
    """Refuse to go on if `target` no longer leads to the `source` just
    mounted there: a swap between mounting and remounting read-only would
    otherwise leave the volume writable."""
    a, b = os.fstat(fd), os.stat(source)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        raise MinirunError(f"mount target {target} changed while it was being mounted "
                           f"(a symlink swapped in?): refusing to start")


def check_cwd_inside_root():
    """After chdir: the working directory must be inside the container's
    root. A directory reached through a leaked fd (-w /proc/self/fd/N, the
    CVE-2024-21626 family) is outside it, and getcwd(3) then fails."""
    try:
        os.getcwd()
    except FileNotFoundError:      # glibc's word for the kernel's "(unreachable)/..."
        raise MinirunError("the working directory is outside the container's root: "
                           "refusing to start") from None
    except OSError:
        pass                       # getcwd denied (a seccomp profile may): cannot tell
