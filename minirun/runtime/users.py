"""`-u USER[:GROUP]` → uid, gid and supplementary groups, read from the
image's own /etc/passwd and /etc/group, as Docker does (not the host's)."""

from minirun.errors import UsageError
from minirun.runtime.spec import User


def read_image_file(layer_dirs, path):
    """The text of `path` as the container will see it (layer_dirs are
    bottom first), symlinks followed inside the image, never out of it:
    an image whose /etc/passwd links to the host's gets no host user."""
    from minirun.image.layerview import read_text
    return read_text(layer_dirs, path)


def _entries(text):
    for line in text.splitlines():
        if line and not line.startswith("#"):
            yield line.split(":")


def resolve_user(spec, layer_dirs):
    """Docker's rules: a name must exist in passwd; a number need not (its
    group is then 0 and its home `/`); the group defaults to the user's own."""
    user_part, _, group_part = (spec or "0").partition(":")
    passwd = [e for e in _entries(read_image_file(layer_dirs, "/etc/passwd")) if len(e) >= 7]
    groups = [e for e in _entries(read_image_file(layer_dirs, "/etc/group")) if len(e) >= 3]

    entry = next((e for e in passwd if e[0] == user_part or (user_part.isdigit() and e[2] == user_part)), None)
    if entry:
        name, uid, gid, home = entry[0], int(entry[2]), int(entry[3]), entry[5]
    elif user_part.isdigit():
        name, uid, gid, home = None, int(user_part), 0, "/"
    else:
        raise UsageError(f"unable to find user {user_part}: no matching entries in passwd file")

    if group_part:
        g = next((e for e in groups if e[0] == group_part or (group_part.isdigit() and e[2] == group_part)), None)
        if g:
            gid = int(g[2])
        elif group_part.isdigit():
            gid = int(group_part)
        else:
            raise UsageError(f"unable to find group {group_part}: no matching entries in group file")

    for kind, value in (("user", uid), ("group", gid)):
        if not 0 <= value < 2**32 - 1:
            raise UsageError(f"{kind} id {value} is out of range (0 to 4294967294)")
    extra = []
    if name and not group_part:
        extra = sorted({int(g[2]) for g in groups if name in g[3].split(",") and int(g[2]) != gid})
    return User(uid=uid, gid=gid, additional_gids=extra, home=home or "/")
