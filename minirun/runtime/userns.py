"""--userns=remap: the container's root is an unprivileged user of the host.

The range comes from /etc/subuid and /etc/subgid, from the entry of the
user `minirun` (scripts/setup adds one, as dockerd's userns-remap adds
`dockremap`): uid 0 inside is uid START outside, uid N is START+N, and so
for groups. Whatever the container's root does then counts on the host as
done by that uid: files it makes in a volume are owned by it, root-owned
host files are out of its reach, and its capabilities mean nothing outside
its own namespaces.

The store-wide default, as dockerd's "userns-remap" setting:
<root>/daemon.json containing {"userns-remap": "default"}; --userns=host
overrides it for one container.

The image's layers are owned by uid 0 on disk. Inside they must still show
as root's: with idmapped mounts where the kernel has them (layers
"idmapped", nothing copied), else with a copy of each layer chowned into
the range, kept in the store (layers "chowned"). Which one is decided by
probing the kernel; --explain shows the probe.
"""
import json
import os

from minirun.errors import UsageError
from minirun.runtime.spec import UserNamespace

REMAP_USER = "minirun"


def subordinate_range(path, user=REMAP_USER):
    """(start, count) of `user`'s line in /etc/subuid or /etc/subgid."""
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.strip().partition(":")
                start, _, count = rest.partition(":")
                if name == user and start.isdigit() and count.isdigit():
                    return int(start), int(count)
    except OSError:
        pass
    raise UsageError(f"--userns=remap needs a range for the user {user!r} in {path} "
                     f"(scripts/setup adds one, e.g. '{user}:100000:65536')")


def store_default(store_root):
    """The store's userns-remap setting: 'remap' or 'host'."""
    try:
        with open(os.path.join(store_root, "daemon.json")) as f:
            config = json.load(f)
    except FileNotFoundError:
        return "host"
    except (OSError, ValueError) as e:
        raise UsageError(f"{store_root}/daemon.json: {e}") from None
    value = config.get("userns-remap") if isinstance(config, dict) else None
    return "remap" if value in ("default", REMAP_USER, True) else "host"


def resolve(store_root, flag):
    """--userns=remap|host (None: the store's default) → UserNamespace or None."""
    choice = flag or store_default(store_root)
    if choice == "host":
        return None
    if choice != "remap":
        raise UsageError(f"--userns {flag}: want remap or host")
    uid_start, uid_count = subordinate_range("/etc/subuid")
    gid_start, gid_count = subordinate_range("/etc/subgid")
    mapping = UserNamespace([[0, uid_start, uid_count]], [[0, gid_start, gid_count]])
    forced = os.environ.get("MINIRUN_USERNS_LAYERS")       # tests try the fallback too
    mapping.layers = forced if forced in ("idmapped", "chowned") else probe_layers(store_root, mapping)
    return mapping


def probe_layers(store_root, mapping):
    """'idmapped' if this kernel can idmap a mount of the store's filesystem
    and stack overlayfs on idmapped layers (Linux 5.19 and later)."""
    from minirun.linux import userns
    release = os.uname().release.split("-")[0].split(".")
    if tuple(int(x) for x in release[:2] if x.isdigit()) < (5, 19):
        return "chowned"
    fds = userns.make_user_namespace(mapping.uid_map, mapping.gid_map, owned=())
    try:
        return "idmapped" if userns.idmap_supported(fds["user"], store_root) else "chowned"
    finally:
        os.close(fds["user"])
