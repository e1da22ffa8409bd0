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

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


class UnsafeArchive(MinirunError):
    pass


def is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path):
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _entries(root):
    """Every path under `root`, relative, in sorted order (parents first)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            out.append(name if rel == "." else os.path.join(rel, name))
    return sorted(out)


def write_tar(root, fileobj):
    """Write the tree at `root` to `fileobj` as a canonical PAX tar, with
    overlay whiteouts turned into `.wh.` entries."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
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
            if info.isreg():
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

    def digest(self):
        return "sha256:" + self.hash.hexdigest()


def diff_id(root):
    """`sha256:<hex>` of the canonical tar of `root` (the OCI 'diff_id')."""
    w = HashWriter()
    write_tar(root, w)
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


def _real_parent(dest, rel):
    """The parent directory of `rel` under `dest`, every step a real
    directory (a symlink there could carry the write outside `dest`)."""
    parent = dest
    for part in rel.split("/")[:-1]:
        parent = os.path.join(parent, part)
        try:
            st = os.lstat(parent)
        except FileNotFoundError:
            os.mkdir(parent, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeArchive(f"refusing archive entry {rel!r}: it passes through a symlink")
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(parent)
            os.mkdir(parent, 0o755)
    return parent


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
    """Unpack a tar stream into `dest`. Nothing lands outside `dest`: `..`
    and absolute names are refused or made relative, no write goes through a
    symlink, hard links must point inside. With layer=True, `.wh.` entries
    become overlay whiteouts; device nodes are made only when we are root."""
    dirs = []
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            rel = _safe_name(member.name)
            if rel is None:
                continue
            parent = _real_parent(dest, rel)
            base = os.path.basename(rel)
            if layer and base == OPAQUE:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
                continue
            if layer and base.startswith(WHITEOUT):
                target = os.path.join(parent, base[len(WHITEOUT):])
                remove_path(target)
                os.mknod(target, stat.S_IFCHR | 0o600, 0)
                continue
            path = os.path.join(parent, base)
            if member.isdir():
                if not os.path.isdir(path) or os.path.islink(path):
                    remove_path(path)
                    os.mkdir(path, 0o700)
                dirs.append((path, member))
                continue
            remove_path(path)
            if member.isreg():
                with open(path, "xb") as f:
                    src = tar.extractfile(member)
                    while chunk := src.read(1 << 20):
                        f.write(chunk)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                target_rel = _safe_name(member.linkname)
                if target_rel is None:
                    raise UnsafeArchive(f"refusing hard link {member.name!r} to the root")
                target = os.path.join(_real_parent(dest, target_rel), os.path.basename(target_rel))
                if not os.path.isfile(target) or os.path.islink(target):
                    raise UnsafeArchive(f"refusing hard link {member.name!r} -> {member.linkname!r}: "
                                        f"not a file inside the archive")
                os.link(target, path)
                continue
            elif member.ischr() or member.isblk() or member.isfifo():
                if os.geteuid() != 0 and not member.isfifo():
                    continue
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
                os.mknod(path, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
            else:
                continue
            _apply_metadata(path, member)
    for path, member in reversed(dirs):
        _apply_metadata(path, member)


def _apply_metadata(path, member):
    if os.geteuid() == 0:
        os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
