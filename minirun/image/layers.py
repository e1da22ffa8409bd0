"""Layers as canonical tars: the bytes whose sha256 names a layer.

Two trees with the same files, modes, owners, link targets and mtimes give
the same tar byte for byte: entries are sorted, user and group names left
out, and no header field depends on the machine or the time of packing.
"""
import hashlib
import os
import stat
import tarfile


def _entries(root):
    """Every path under `root`, relative, parents before children, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        names = sorted(dirnames + [f for f in filenames])
        for name in names:
            yield name if rel == "." else os.path.join(rel, name)


def write_tar(root, fileobj):
    """Write the tree at `root` to `fileobj` as a canonical PAX tar."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        hardlinks = {}
        for rel in sorted(_entries(root)):
            path = os.path.join(root, rel)
            info = tar.gettarinfo(path, arcname=rel)
            info.uname = info.gname = ""
            info.mtime = int(info.mtime)
            st = os.lstat(path)
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


class _HashWriter:
    def __init__(self):
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def diff_id(root):
    """`sha256:<hex>` of the canonical tar of `root` (the OCI 'diff_id')."""
    w = _HashWriter()
    write_tar(root, w)
    return "sha256:" + w.hash.hexdigest()
