"""The raw system calls Python 3.11's `os` module lacks, through ctypes.

This is the only place minirun calls libc directly. Each wrapper prints its
step for --explain and turns a failure into a KernelError naming the call,
its arguments and errno, as crun does: `pivot_root(".", "."): EINVAL`.
"""
import ctypes
import errno
import os

from minirun.errors import KernelError
from minirun.linux import explain

_libc = ctypes.CDLL(None, use_errno=True)

# Namespace flags, <linux/sched.h>; see namespaces(7).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC,
    "pid": CLONE_NEWPID, "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP,
    "user": CLONE_NEWUSER,
}
_FLAG_NAMES = {
    CLONE_NEWNS: "CLONE_NEWNS", CLONE_NEWUTS: "CLONE_NEWUTS",
    CLONE_NEWIPC: "CLONE_NEWIPC", CLONE_NEWPID: "CLONE_NEWPID",
    CLONE_NEWNET: "CLONE_NEWNET", CLONE_NEWCGROUP: "CLONE_NEWCGROUP",
    CLONE_NEWUSER: "CLONE_NEWUSER",
}

# Mount flags, <sys/mount.h>; see mount(2).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_UNBINDABLE = 1 << 17
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

_MS_NAMES = [(MS_RDONLY, "MS_RDONLY"), (MS_NOSUID, "MS_NOSUID"), (MS_NODEV, "MS_NODEV"),
             (MS_NOEXEC, "MS_NOEXEC"), (MS_REMOUNT, "MS_REMOUNT"), (MS_BIND, "MS_BIND"),
             (MS_REC, "MS_REC"), (MS_PRIVATE, "MS_PRIVATE"), (MS_SLAVE, "MS_SLAVE"),
             (MS_SHARED, "MS_SHARED"), (MS_UNBINDABLE, "MS_UNBINDABLE")]


def _flag_names(flags, table):
    return "|".join(name for bit, name in table if flags & bit) or "0"


def ns_flag_names(flags):
    return _flag_names(flags, sorted(_FLAG_NAMES.items()))


def _check(result, call):
    if result != 0:
        err = ctypes.get_errno()
        raise KernelError(f"{call}: {errno.errorcode.get(err, err)} ({os.strerror(err)})")


def unshare(flags):
    """Move the caller into new namespaces — unshare(2)."""
    call = f"unshare({ns_flag_names(flags)})"
    explain.step(call, "unshare(2)")
    _check(_libc.unshare(ctypes.c_int(flags)), call)


def setns(fd, nstype=0):
    """Join the namespace that `fd` (a /proc/PID/ns/* file) refers to — setns(2)."""
    call = f"setns({fd}, {ns_flag_names(nstype)})"
    explain.step(call, "setns(2)")
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), call)


def join_namespace(path, ns):
    """setns(2) into the `ns` namespace that `path` names (/proc/PID/ns/...,
    or a file one was bound on); the error says which path failed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise KernelError(f"cannot join the {ns} namespace at {path}: {e.strerror}") from None
    try:
        setns(fd, NAMESPACE_FLAGS[ns])
    except KernelError as e:
        raise KernelError(f"cannot join the {ns} namespace at {path} (is it one?): {e}") from None
    finally:
        os.close(fd)


def mount(source, target, fstype=None, flags=0, data=None):
    """Attach a filesystem, or change a mount's flags or propagation — mount(2)."""
    def show(s):
        return f'"{s}"' if s is not None else "NULL"

    call = (f"mount({show(source)}, {show(target)}, {show(fstype)}, "
            f"{_flag_names(flags, _MS_NAMES)}, {show(data)})")
    explain.step(call, "mount(2)")

    def c(s):
        return s.encode() if s is not None else None

    _check(_libc.mount(c(source), c(target), c(fstype), ctypes.c_ulong(flags), c(data)), call)


def umount(target, flags=0):
    """Detach a mount — umount2(2)."""
    call = f'umount2("{target}", {"MNT_DETACH" if flags & MNT_DETACH else flags})'
    explain.step(call, "umount2(2)")
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), call)


def sethostname(name):
    """Name this UTS namespace — sethostname(2)."""
    call = f'sethostname("{name}")'
    explain.step(call, "sethostname(2)")
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), call)


def setdomainname(name):
    """Name this UTS namespace's NIS domain — setdomainname(2)."""
    call = f'setdomainname("{name}")'
    explain.step(call, "setdomainname(2)")
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), call)


PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 47, 2


def cap_ambient_raise(cap):
    """Add `cap` to the ambient set, kept across execve of an unprivileged
    program — prctl(2) PR_CAP_AMBIENT (python-prctl lacks it)."""
    call = f"prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, {cap})"
    explain.step(call, "prctl(2)")
    _check(_libc.prctl(ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_RAISE),
                       ctypes.c_ulong(cap), ctypes.c_ulong(0), ctypes.c_ulong(0)), call)


# libc has no pivot_root wrapper; its syscall number depends on the machine.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "armv7l": 218}


def pivot_root(new_root, put_old):
    """Make `new_root` the root of this mount namespace — pivot_root(2)."""
    call = f'pivot_root("{new_root}", "{put_old}")'
    explain.step(call, "pivot_root(2)")
    nr = _SYS_PIVOT_ROOT[os.uname().machine]
    _check(_libc.syscall(ctypes.c_long(nr), new_root.encode(), put_old.encode()), call)


def chroot(path):
    """Change only the caller's idea of `/`; the mounts above it stay in its
    namespace, reachable by a process that can chroot again — chroot(2)."""
    call = f'chroot("{path}")'
    explain.step(call, "chroot(2)")
    os.chroot(path)


# openat2(2), Linux 5.6: open a path under rules for how it may be resolved.
RESOLVE_NO_XDEV = 0x01        # never cross a mount point
RESOLVE_NO_MAGICLINKS = 0x02  # never follow /proc/PID/fd/N-style links
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10        # treat the directory fd as "/": nothing resolves above it
_SYS_OPENAT2 = 437            # one number on every architecture


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_RESOLVE_NAMES = [(RESOLVE_NO_XDEV, "RESOLVE_NO_XDEV"), (RESOLVE_NO_MAGICLINKS, "RESOLVE_NO_MAGICLINKS"),
                  (RESOLVE_NO_SYMLINKS, "RESOLVE_NO_SYMLINKS"), (RESOLVE_BENEATH, "RESOLVE_BENEATH"),
                  (RESOLVE_IN_ROOT, "RESOLVE_IN_ROOT")]


def openat2(dirfd, path, flags, resolve, mode=0):
    """Open `path` relative to `dirfd` under the `resolve` rules — openat2(2).
    Failures are OSErrors (FileNotFoundError...) naming the path; a kernel
    without openat2 is a KernelError: minirun never falls back to a path walk."""
    call = f'openat2({dirfd}, "{path}", {_flag_names(resolve, _RESOLVE_NAMES)})'
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), path.encode(),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            raise KernelError(f"{call}: this kernel has no openat2(2); minirun needs Linux 5.6 "
                              f"or later to resolve paths inside a container safely")
        raise OSError(err, os.strerror(err), path)
    explain.step(f"{call} = {fd}", "openat2(2)")
    return fd


# bpf(2): load and attach eBPF programs (devicefilter.py builds the one we use).
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "armv7l": 386}


def bpf(cmd, attr, call):
    """One bpf(2) command with its attribute block (bytes, mutable); returns
    what the kernel returns (a file descriptor for BPF_PROG_LOAD)."""
    explain.step(call, "bpf(2)")
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    return _syscall_fd(_SYS_BPF[os.uname().machine], call, ctypes.c_int(cmd), buf,
                       ctypes.c_uint(len(attr)),
                       missing="minirun needs it to limit devices on cgroup v2")


# seccomp(2): install a BPF program the kernel runs at every system call.
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "armv7l": 383}
SECCOMP_SET_MODE_FILTER = 1


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(program, call):
    """Install `program` (struct sock_filter[], 8 bytes each) for this thread
    and its future children; needs no_new_privs first — seccomp(2)."""
    explain.step(call, "seccomp(2)")
    code = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(code))
    _check(_libc.syscall(ctypes.c_long(_SYS_SECCOMP[os.uname().machine]),
                         ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(0),
                         ctypes.byref(prog)), call)


# The new mount API (Linux 5.2; mount_setattr 5.12): detached mounts held by
# file descriptors, changed before they are attached anywhere.
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442   # on every architecture
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _syscall_fd(nr, call, *args, missing=None):
    """A raw syscall returning a number (a fd): a KernelError naming `call`
    when it fails; ENOSYS says what minirun needed it for (`missing`)."""
    result = _libc.syscall(ctypes.c_long(nr), *args)
    if result < 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS and missing:
            raise KernelError(f"{call}: this kernel does not have it; {missing}")
        raise KernelError(f"{call}: {errno.errorcode.get(err, err)} ({os.strerror(err)})")
    return result


def open_tree(path):
    """A detached copy of the mount tree at `path`, as a file descriptor:
    attached nowhere until move_mount — open_tree(2) with OPEN_TREE_CLONE."""
    call = f'open_tree(AT_FDCWD, "{path}", OPEN_TREE_CLONE|AT_RECURSIVE)'
    explain.step(call, "open_tree(2)")
    return _syscall_fd(_SYS_OPEN_TREE, call, ctypes.c_int(-100), path.encode(),
                       ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE))


def mount_setattr_idmap(mount_fd, userns_fd):
    """Make the detached mount show file owners through the maps of the user
    namespace `userns_fd` — mount_setattr(2) with MOUNT_ATTR_IDMAP."""
    call = f"mount_setattr({mount_fd}, MOUNT_ATTR_IDMAP, userns_fd={userns_fd})"
    explain.step(call, "mount_setattr(2)")
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    _syscall_fd(_SYS_MOUNT_SETATTR, call, ctypes.c_int(mount_fd), b"",
                ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE), ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)))


def move_mount(mount_fd, target):
    """Attach the detached mount `mount_fd` at `target` — move_mount(2)."""
    call = f'move_mount({mount_fd}, "", AT_FDCWD, "{target}", MOVE_MOUNT_F_EMPTY_PATH)'
    explain.step(call, "move_mount(2)")
    _syscall_fd(_SYS_MOVE_MOUNT, call, ctypes.c_int(mount_fd), b"", ctypes.c_int(-100),
                target.encode(), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
