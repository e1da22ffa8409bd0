"""An image's files as its stacked layers show them, read without mounting
and without ever leaving the layers.

Overlayfs rules, applied by hand: the topmost layer that has a name wins; a
whiteout hides the name in the layers below; an opaque directory hides the
directories below it; a directory over a file hides the file. A symlink in
the image is followed *inside the image* (an absolute target means the
image's `/`), as the container would see it — never through the host's
`/`. Every lstat here is of a path whose parents were each seen to be a
real directory in that layer, so no host symlink is followed either.
"""
import errno
import os
import stat

# How overlayfs marks a deletion in a layer directory (layers.py turns these
# into a tar's `.wh.` entries and back).
WHITEOUT = ".wh."                        # tar form of a whiteout: .wh.<name>
OPAQUE = ".wh..wh..opq"                  # tar form of an opaque directory
OPAQUE_XATTR = "trusted.overlay.opaque"


def is_whiteout(st):
    """A whiteout: the 0/0 character device overlayfs writes for a removed name."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path):
    """A directory that hides the directories below it (xattr opaque=y)."""
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _parts(path):
    return [p for p in path.split("/") if p not in ("", ".")]


def visible_layers(lowers, rel):
    """The layers (bottom first) whose entry at `rel` is part of what the
    stack shows there: the topmost one, and below it as long as each is a
    directory that is not opaque. [] if nothing is there."""
    parts = _parts(rel)
    layers = list(reversed(lowers))          # top first: where the path so far is a directory
    for i in range(len(parts)):
        prefix = os.path.join(*parts[:i + 1])
        seen = []                            # (layer, lstat), top first
        for layer in layers:
            try:
                st = os.lstat(os.path.join(layer, prefix))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if is_whiteout(st):
                break
            seen.append((layer, st))
            if not stat.S_ISDIR(st.st_mode) or is_opaque(os.path.join(layer, prefix)):
                break                        # it hides what lies below
        if not seen:
            return []
        if i < len(parts) - 1:               # to go on, the name must be a directory
            if not stat.S_ISDIR(seen[0][1].st_mode):
                return []
            seen = [(layer, st) for layer, st in seen if stat.S_ISDIR(st.st_mode)]
        layers = [layer for layer, _ in seen]
    return layers[::-1]


def lookup(lowers, path):
    """lstat of `path` as the stack shows it, or None."""
    rel = "/".join(_parts(path))
    if not rel:
        return os.lstat(lowers[-1]) if lowers else None
    layers = visible_layers(lowers, rel)
    return os.lstat(os.path.join(layers[-1], rel)) if layers else None


def resolve(lowers, path):
    """`path` with every symlink followed inside the image: the relative
    path it leads to (which may not exist)."""
    parts = _parts(path)
    resolved = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        rel = "/".join(resolved + [part])
        layers = visible_layers(lowers, rel)
        if layers and stat.S_ISLNK(os.lstat(os.path.join(layers[-1], rel)).st_mode):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = os.readlink(os.path.join(layers[-1], rel))
            if target.startswith("/"):
                resolved = []
            parts = _parts(target) + parts
            continue
        resolved.append(part)
    return "/".join(resolved)


def read_text(lowers, path):
    """The text of the file at `path` (symlinks followed inside the image),
    or '' if there is no regular file there."""
    rel = resolve(lowers, path)
    layers = visible_layers(lowers, rel) if rel else []
    if not layers:
        return ""
    try:
        fd = os.open(os.path.join(layers[-1], rel), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with open(fd, errors="replace") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return f.read()
