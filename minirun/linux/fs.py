"""Filesystem steps of a container's start: overlay, pseudo-filesystems,
bind mounts, device nodes and the switch of root. Each is one kernel step.

The paths given here are already decided by the caller; these functions
attach, remount or detach, and nothing else.
"""
import os
import stat

from minirun.linux import explain
from minirun.linux.syscalls import (
    MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY,
    MS_REC, MS_REMOUNT, mount, pivot_root, umount)



def make_mounts_private():
    """Stop mount events propagating between this namespace and the host's —
    mount(2) with MS_PRIVATE, see mount_namespaces(7)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)


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


def mount_devpts(target):
    """A private instance of pseudo-terminals with its own ptmx — pts(4)."""
    mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5")


def mount_mqueue(target):
    """POSIX message queues of this IPC namespace — mq_overview(7)."""
    mount("mqueue", target, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def make_device(path, major, minor, mode=0o666):
    """Create a character device node — mknod(2)."""
    explain.step(f'mknod("{path}", S_IFCHR|{mode:o}, makedev({major}, {minor}))', "mknod(2)")
    os.mknod(path, stat.S_IFCHR | mode, os.makedev(major, minor))
    os.chmod(path, mode)  # mknod's mode is filtered by the umask


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


def secure_join(root, path):
    """Resolve `path` as if `root` were `/`: symlinks and `..` inside the
    container's tree can never lead out of it (runc's securejoin does this).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)
