"""How COPY and ADD put files into the tree of a new layer: the directories
above the destination as the layers below have them, each file or tree
copied (a file's bytes left for the pass that hashes the layer:
layers.Pending), and a stage's files as its layers show them (materialize).
What COPY means — its flags, sources and destination — is steps.py's; this
is the file work, imported only by a step that does it.
"""
import os
import shutil
import stat
import tarfile

from minirun.image import layers as layerfs, layerview


def make_parents(tree, path, lowers, include_last=False):
    """Create `path`'s parent directories in `tree`, each with the owner,
    mode and mtime the layers below give it (so the layer does not change
    them), or root's 0755 when new."""
    parts = path.strip("/").split("/")
    upto = parts if include_last else parts[:-1]
    current = ""
    for part in upto:
        if not part:
            continue
        current += "/" + part
        target = tree + current
        if not directory_at(target):
            continue
        below = layerview.lookup(lowers, current)
        if below is not None and stat.S_ISDIR(below.st_mode):
            os.chown(target, below.st_uid, below.st_gid)
            os.chmod(target, stat.S_IMODE(below.st_mode))
            os.utime(target, ns=(below.st_atime_ns, below.st_mtime_ns))
    return tree + (current or "/")


def fill_now(later):
    """Copy at once the bytes of the files left for the layer's hashing."""
    for target, pending in later.items():
        st = os.lstat(target)
        shutil.copyfile(pending.source, target)
        os.chmod(target, stat.S_IMODE(st.st_mode))   # setuid/setgid, should the write clear them
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    later.clear()


def is_archive(path):
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def own(path, owner, mode=None):
    os.lchown(path, *owner)
    if mode is not None and not os.path.islink(path):
        os.chmod(path, mode)


def make_room(path):
    """Clear `path` in the tree a COPY is building for a new entry: what an
    earlier source of the same COPY put there goes, as a later tar entry
    replaces an earlier one, so nothing is ever written through a symlink.
    The attack it stops: `COPY d1 d2 /dst/` where d1/x is a symlink to
    /etc/passwd and d2/x a file — copying d2/x opened the symlink and wrote
    the host's /etc/passwd (and with d1/x -> /etc, d2/x/... planted files in
    the host's /etc)."""
    layerfs.remove_path(path)


def directory_at(path):
    """A real directory at `path` (not a symlink to one): True if it had
    to be made."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            return False
    except FileNotFoundError:
        pass
    make_room(path)
    os.mkdir(path, 0o755)
    return True


def copy_file(src, target, owner, mode, st=None, later=None):
    """One file's bytes, mode and mtime (a source symlink is followed: it
    was checked to stay inside). No xattrs, as Docker's COPY. With `later`
    (a dict), the file is made empty and its bytes are left to the pass
    that hashes the layer (layers.Pending)."""
    st = st or os.stat(src)
    make_room(target)
    if later is None:
        shutil.copyfile(src, target)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        later[target] = layerfs.Pending(src, st)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    own(target, owner, stat.S_IMODE(st.st_mode) if mode is None else mode)


def copy_tree(root, rel, target, owner, mode, walk=None, later=None):
    """A directory's contents (not the directory itself, as Docker copies),
    symlinks inside kept as symlinks, .dockerignore'd entries left out."""
    src_top = os.path.join(root, rel) if rel else root
    shutil.copystat(src_top, target)
    own(target, owner)
    entries = walk(rel) if walk else walk(src_top, rel)
    dirs, made = [], {target}
    for sub in entries:
        src = os.path.join(root, sub)
        dst = os.path.join(target, os.path.relpath(sub, rel) if rel else sub)
        st = os.lstat(src)
        if os.path.dirname(dst) not in made:     # its directory was .dockerignore'd
            below = os.path.relpath(os.path.dirname(dst), target).split(os.sep)
            for i in range(len(below)):
                directory_at(os.path.join(target, *below[:i + 1]))
        if stat.S_ISDIR(st.st_mode):
            directory_at(dst)
            made.add(dst)
            dirs.append((src, dst))
            own(dst, owner, mode)
        elif stat.S_ISLNK(st.st_mode):
            make_room(dst)
            os.symlink(os.readlink(src), dst)
            own(dst, owner)
        elif stat.S_ISREG(st.st_mode):
            copy_file(src, dst, owner, mode, st, later)
    for src, dst in reversed(dirs):
        shutil.copystat(src, dst, follow_symlinks=False)
        if mode is not None:
            os.chmod(dst, mode)


def walk(top, rel):
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        sub = os.path.relpath(dirpath, top)
        for name in dirnames + filenames:
            path = name if sub == "." else os.path.join(sub, name)
            out.append(os.path.join(rel, path) if rel else path)
    return sorted(out)


def materialize(lowers, rel, out):
    """Copy `rel` as the stacked layers show it into `out` (same relative
    path), applying whiteouts and opaque directories layer by layer. `rel`
    has its symlinks resolved already; only the layers that show it are read."""
    layers = layerview.visible_layers(lowers, rel) if rel else lowers
    for layer in layers:
        src = os.path.join(layer, rel) if rel else layer
        dst = os.path.join(out, rel) if rel else out
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        _apply_entry(src, dst, os.lstat(src))
    return bool(layers)


def _apply_entry(src, dst, st):
    """One layer's entry over what the layers below left at `dst`."""
    if layerfs.is_whiteout(st):
        layerfs.remove_path(dst)
    elif stat.S_ISDIR(st.st_mode):
        if not os.path.isdir(dst) or os.path.islink(dst) or layerfs.is_opaque(src):
            layerfs.remove_path(dst)
        os.makedirs(dst, exist_ok=True)
        for name in os.listdir(src):
            _apply_entry(os.path.join(src, name), os.path.join(dst, name),
                         os.lstat(os.path.join(src, name)))
        shutil.copystat(src, dst)
        os.chown(dst, st.st_uid, st.st_gid)
    else:
        layerfs.remove_path(dst)
        shutil.copy2(src, dst, follow_symlinks=False)
        os.lchown(dst, st.st_uid, st.st_gid)
