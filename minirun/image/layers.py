"""Layers on disk and as tars.

On disk a layer is a directory used as an overlay lowerdir, so a deletion is
what overlayfs itself writes: a whiteout (a 0/0 character device) for a
removed file, the xattr trusted.overlay.opaque="y" on a directory whose lower
contents are hidden. In a tar (the OCI and Docker form) they are empty files
named `.wh.<name>` and `<dir>/.wh..wh..opq`.

The canonical tar names a layer: two trees with the same files, modes,
owners, link targets and mtimes give the same tar byte for byte (entries
sorted, no user or group names, nothing from the machine or the clock), and
its sha256 is the layer's diff_id.
"""
import hashlib
import os
import stat
import tarfile

from minirun.errors import MinirunError
# overlayfs's marks are defined where its rules are read (a run needs those,
# and not tarfile); here they are turned into tar entries and back.
from minirun.image.layerview import OPAQUE, OPAQUE_XATTR, WHITEOUT, is_opaque, is_whiteout  # noqa: F401


class UnsafeArchive(MinirunError):
    pass


def _entries(root):
    """Every path under `root`, relative, in sorted order (parents first)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            out.append(name if rel == "." else os.path.join(rel, name))
    return sorted(out)


class Pending:
    """A regular file of a tree still empty, whose bytes are to come from
    `source` (`st`: its stat): COPY makes the tree's shape first and leaves
    the bytes to the one pass that hashes the layer, so that each byte is
    read once, written to the layer and hashed into its diff_id — and, with
    `content` (a hashlib object), hashed alone too, for the build context's
    checksum cache."""
    def __init__(self, source, st):
        self.source, self.st, self.content = source, st, None


class _Fill:
    """What tarfile reads a pending file's bytes from: the source, each
    chunk written to the file in the tree on its way into the tar."""
    def __init__(self, pending, src, dst):
        self.pending, self.src, self.dst = pending, src, dst

    def read(self, n):
        data = self.src.read(n)
        self.dst.write(data)
        if self.pending.content is not None:
            self.pending.content.update(data)
        return data


def _add_pending(tar, info, path, st, pending):
    """A pending file into the tar and into the tree at once; its mtime,
    which the writing changed, is put back, and its setuid and setgid bits,
    which a write clears when the writer lacks CAP_FSETID."""
    info.size = pending.st.st_size
    with open(pending.source, "rb") as src, open(path, "wb") as dst:
        try:
            tar.addfile(info, _Fill(pending, src, dst))
        except OSError as e:
            if e.errno is not None:
                raise
            raise MinirunError(f"{pending.source} changed while it was copied") from None
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def write_tar(root, fileobj, pending=None):
    """Write the tree at `root` to `fileobj` as a canonical PAX tar, with
    overlay whiteouts turned into `.wh.` entries. `pending`: {path in the
    tree: Pending}, files whose bytes are filled in on the way."""
    # Written straight through (mode "w", not the buffered stream "w|",
    # whose buffer grows by concatenation) with 1 MB copies instead of
    # 16 kB: the same bytes, far fewer Python calls.
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.copybufsize = 1 << 20
        hardlinks = {}
        names = []
        for rel in _entries(root):
            path = os.path.join(root, rel)
            st = os.lstat(path)
            if is_whiteout(st):
                head, tail = os.path.split(rel)
                names.append((os.path.join(head, WHITEOUT + tail), None))
                continue
            names.append((rel, path))
            if stat.S_ISDIR(st.st_mode) and is_opaque(path):
                names.append((os.path.join(rel, OPAQUE), None))
        for rel, path in sorted(names):
            if path is None:                      # a whiteout marker
                info = tarfile.TarInfo(rel)
                info.mode = 0o600
                tar.addfile(info)
                continue
            st = os.lstat(path)
            info = _tarinfo(rel, path, st)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in hardlinks:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, hardlinks[key], 0
                    tar.addfile(info)
                    continue
                hardlinks[key] = rel
            if pending and path in pending and info.isreg():
                _add_pending(tar, info, path, st, pending[path])
            elif info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


TAR_TYPES = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFDIR: tarfile.DIRTYPE,
             stat.S_IFLNK: tarfile.SYMTYPE, stat.S_IFCHR: tarfile.CHRTYPE,
             stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}


def _tarinfo(rel, path, st):
    """A tar header from lstat alone: no user or group names, whole-second
    mtimes (tarfile's gettarinfo would look the names up, file by file)."""
    info = tarfile.TarInfo(rel)
    info.type = TAR_TYPES.get(stat.S_IFMT(st.st_mode), tarfile.REGTYPE)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    if info.type == tarfile.REGTYPE:
        info.size = st.st_size
    elif info.type == tarfile.SYMTYPE:
        info.linkname = os.readlink(path)
    elif info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info


class HashWriter:
    """A file-like sink that only hashes (and counts) what is written."""
    def __init__(self, out=None):
        self.hash = hashlib.sha256()
        self.size = 0
        self.out = out

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def tell(self):
        return self.size

    def digest(self):
        return "sha256:" + self.hash.hexdigest()


def shift_owners(root, uid_delta, gid_delta, below=None):
    """Add the deltas to the owner of every entry under `root` (itself
    included), links themselves and not their targets. With `below`
    (uid, gid, count): only owners inside that range are shifted — how a
    remapped RUN step's layer gets back to the image's own ids."""
    def shifted(value, delta, low):
        if below is None or low <= value < low + below[2]:
            return value + delta
        return value

    for rel in [""] + _entries(root):
        path = os.path.join(root, rel) if rel else root
        st = os.lstat(path)
        uid = shifted(st.st_uid, uid_delta, below[0] if below else 0)
        gid = shifted(st.st_gid, gid_delta, below[1] if below else 0)
        if (uid, gid) == (st.st_uid, st.st_gid):
            continue
        os.lchown(path, uid, gid)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))   # chown(2) cleared setuid/setgid


def write_layer_tar(root, digest, fileobj):
    """A stored layer's canonical tar into `fileobj` (save, push), checked
    against the digest the layer is named by; its size in bytes."""
    w = HashWriter(fileobj)
    write_tar(root, w)
    if w.digest() != digest:
        raise MinirunError(f"layer {digest[:19]} on disk no longer matches its digest: "
                           f"build or load its image again, or remove it (rmi -f)")
    return w.size


def diff_id(root, pending=None):
    """`sha256:<hex>` of the canonical tar of `root` (the OCI 'diff_id');
    the `pending` files (see write_tar) are filled in on the way."""
    w = HashWriter()
    write_tar(root, w, pending)
    return w.digest()


def clamp_mtimes(root, epoch):
    """SOURCE_DATE_EPOCH, as reproducible builds define it: no file is newer."""
    for rel in [""] + _entries(root):
        path = os.path.join(root, rel)
        st = os.lstat(path)
        if st.st_mtime > epoch and not is_whiteout(st):
            os.utime(path, (epoch, epoch), follow_symlinks=False)


# --- unpacking, safely ---------------------------------------------------------------

def _safe_name(name):
    """A member's path made relative; None for the root; refused if it climbs."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"refusing archive entry {name!r}: it climbs out with '..'")
    return "/".join(parts) or None


class _Tree:
    """The directory a tar is unpacked into, reached only through file
    descriptors: each entry is made relative to its parent directory's fd,
    and every step down opens a real directory with O_NOFOLLOW, so no
    create, chmod, chown or utime can follow a symlink out of the tree — not
    even one the archive itself made a moment before (openat(2))."""
    DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, dest):
        self.root = os.open(dest, self.DIR)
        self.dirs = {"": self.root}          # a few open directories, by relative path

    def close(self):
        for fd in self.dirs.values():
            os.close(fd)

    def forget(self, rel):
        """`rel` was removed or replaced: its fds (and those below) are stale."""
        for key in [k for k in self.dirs if k == rel or k.startswith(rel + "/")]:
            os.close(self.dirs.pop(key))

    def parent(self, rel):
        """The fd of `rel`'s parent directory, made if missing; a symlink on
        the way is refused, a file on the way is replaced by a directory."""
        return self.directory(os.path.dirname(rel), make=True)

    def directory(self, rel, make=False):
        if rel in self.dirs:
            return self.dirs[rel]
        up, name = os.path.split(rel)
        parent = self.directory(up, make)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            if not make:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
        else:
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchive(f"refusing archive entry under {rel!r}: it passes through a symlink")
            if not stat.S_ISDIR(st.st_mode):
                if not make:
                    raise NotADirectoryError(rel)
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o755, dir_fd=parent)
        if len(self.dirs) > 64:
            self.forget_all_but_root()
            parent = self.directory(up, make)
        fd = os.open(name, self.DIR, dir_fd=parent)
        self.dirs[rel] = fd
        return fd

    def forget_all_but_root(self):
        for key in [k for k in self.dirs if k]:
            os.close(self.dirs.pop(key))

    def remove(self, parent, name, rel):
        """Whatever is at `name` in `parent` goes (a file, a link, a whole tree)."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            import shutil
            self.forget(rel)
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)


def remove_path(path):
    """Whatever is at `path` (a file, a link, a whole tree) goes; nothing there is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil
        shutil.rmtree(path)
    else:
        os.unlink(path)


def unpack_tar(fileobj, dest, layer=True):
    """Unpack a tar stream into `dest`. Nothing lands outside `dest` and
    nothing outside it changes: `..` is refused, absolute names are made
    relative, every entry is made through its parent's fd (see _Tree), hard
    links must point inside. Directories get their modes and times last,
    through an fd opened without following links, so a later entry of the
    same name that is a symlink cannot redirect the chmod. With layer=True,
    `.wh.` entries become overlay whiteouts; device nodes are made only
    when we are root."""
    tree = _Tree(dest)
    dirs = []
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*", bufsize=1 << 20) as tar:
            for member in tar:
                rel = _safe_name(member.name)
                if rel is not None:
                    _unpack_member(tar, member, rel, tree, dirs, layer)
        for rel, member in reversed(dirs):
            _set_directory_metadata(tree, rel, member)
    finally:
        tree.close()


def _unpack_member(tar, member, rel, tree, dirs, layer):
    parent = tree.parent(rel)
    name = os.path.basename(rel)
    if layer and name == OPAQUE:
        os.setxattr(f"/proc/self/fd/{parent}", OPAQUE_XATTR, b"y")
        return
    if layer and name.startswith(WHITEOUT):
        hidden = name[len(WHITEOUT):]
        tree.remove(parent, hidden, os.path.join(os.path.dirname(rel), hidden))
        os.mknod(hidden, stat.S_IFCHR | 0o600, 0, dir_fd=parent)
        return
    if member.isdir():
        try:
            is_dir = stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            is_dir = False
        if not is_dir:
            tree.remove(parent, name, rel)
            os.mkdir(name, 0o700, dir_fd=parent)
        dirs.append((rel, member))
        return
    tree.remove(parent, name, rel)
    if member.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        with open(fd, "wb", closefd=True) as f:
            src = tar.extractfile(member)
            while chunk := src.read(1 << 20):
                f.write(chunk)
            f.flush()                         # before the mtime is set, not after
            _set_fd_metadata(f.fileno(), member)
        return
    if member.issym():
        os.symlink(member.linkname, name, dir_fd=parent)
    elif member.islnk():
        target_rel = _safe_name(member.linkname)
        if target_rel is None:
            raise UnsafeArchive(f"refusing hard link {member.name!r} to the root")
        target_parent = tree.parent(target_rel)
        target = os.path.basename(target_rel)
        try:
            st = os.stat(target, dir_fd=target_parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise UnsafeArchive(f"refusing hard link {member.name!r} -> {member.linkname!r}: "
                                f"not a file inside the archive")
        os.link(target, name, src_dir_fd=target_parent, dst_dir_fd=parent, follow_symlinks=False)
        return
    elif member.ischr() or member.isblk() or member.isfifo():
        if os.geteuid() != 0 and not member.isfifo():
            return
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        os.mknod(name, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor),
                 dir_fd=parent)
    else:
        return
    if os.geteuid() == 0:
        os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
    if not member.issym():
        os.chmod(name, member.mode & 0o7777, dir_fd=parent, follow_symlinks=False)
    os.utime(name, (member.mtime, member.mtime), dir_fd=parent, follow_symlinks=False)


def _set_fd_metadata(fd, member):
    if os.geteuid() == 0:
        os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & 0o7777)
    os.utime(fd, (member.mtime, member.mtime))


def _set_directory_metadata(tree, rel, member):
    """A directory's owner, mode and times, through an fd of the directory
    itself; if a later entry replaced it (by a symlink, say), nothing."""
    try:
        parent = tree.directory(os.path.dirname(rel))
        fd = os.open(os.path.basename(rel), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                     dir_fd=parent)
    except (OSError, UnsafeArchive):
        return
    try:
        _set_fd_metadata(fd, member)
    finally:
        os.close(fd)
