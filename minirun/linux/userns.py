"""User namespaces: user and group ids inside mapped onto a range outside —
user_namespaces(7).

A user namespace's maps (/proc/PID/uid_map, gid_map) are written once, from
outside, by a process privileged over the parent namespace; so a process
must be inside before they can be written. make_user_namespace() forks a
helper that unshares CLONE_NEWUSER, writes its maps from here, then lets
the helper make, from inside, the namespaces the container's root must
own (network: to bind port 80 or ping; UTS; IPC). We keep a descriptor of
each; the helper exits, and the namespaces live on in the descriptors.

An idmapped mount shows a directory's files with their owners translated
through a user namespace's maps, without changing a byte on disk:
the image's root-owned layers appear owned by the container's root.
"""
import os

from minirun.errors import KernelError
from minirun.linux import explain
from minirun.linux.syscalls import (
    NAMESPACE_FLAGS, mount_setattr_idmap, move_mount, open_tree, unshare)


def write_id_maps(pid, uid_map, gid_map):
    """uid_map and gid_map of the user namespace of `pid`: lines of
    (first id inside, first id outside, count) — user_namespaces(7)."""
    for kind, entries in (("uid_map", uid_map), ("gid_map", gid_map)):
        text = "".join(f"{inside} {outside} {count}\n" for inside, outside, count in entries)
        explain.step(f'write("/proc/{pid}/{kind}", "{text.strip()}")', "user_namespaces(7)")
        with open(f"/proc/{pid}/{kind}", "w") as f:
            f.write(text)


def make_user_namespace(uid_map, gid_map, owned=("net", "uts", "ipc")):
    """{"user": fd, and one fd per namespace in `owned`, made inside it}."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    explain.step("fork() a helper to hold the new user namespace", "fork(2)")
    pid = os.fork()
    if pid == 0:                                   # the helper
        os.close(ready_r)
        os.close(go_w)
        try:
            unshare(NAMESPACE_FLAGS["user"])
            os.write(ready_w, b"u")
            os.read(go_r, 1)                       # our maps are written
            flags = 0
            for ns in owned:
                flags |= NAMESPACE_FLAGS[ns]
            if flags:
                unshare(flags)
            os.write(ready_w, b"n")
            os.read(go_r, 1)                       # end-of-file: they hold our namespaces
        except BaseException:
            os._exit(1)
        os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    fds = {}
    try:
        if os.read(ready_r, 1) != b"u":
            raise KernelError("unshare(CLONE_NEWUSER) failed in the helper: does this kernel "
                              "allow user namespaces (user.max_user_namespaces)?")
        write_id_maps(pid, uid_map, gid_map)
        os.write(go_w, b"m")
        if os.read(ready_r, 1) != b"n":
            raise KernelError("the user namespace's helper could not make its namespaces")
        for ns in ("user",) + tuple(owned):
            fds[ns] = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        return fds
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    finally:
        os.close(go_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def idmapped_mount(source, target, userns_fd):
    """Mount `source` at `target`, its owners shown through the maps of
    `userns_fd`: a detached clone, idmapped, then attached."""
    tree = open_tree(source)
    try:
        mount_setattr_idmap(tree, userns_fd)
        move_mount(tree, target)
    finally:
        os.close(tree)


_supported = None


def idmap_supported(userns_fd, probe_dir):
    """Can this kernel idmap a mount of `probe_dir`'s filesystem? Tried on a
    detached clone, which is dropped: nothing is ever attached."""
    global _supported
    if _supported is None:
        try:
            tree = open_tree(probe_dir)
        except KernelError:
            _supported = False
            return _supported
        try:
            mount_setattr_idmap(tree, userns_fd)
            _supported = True
        except KernelError:
            _supported = False
        finally:
            os.close(tree)
    return _supported
