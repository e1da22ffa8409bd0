"""Keeping the store tidy: rmi, history, prune. Everything that deletes
holds the store's lock, and a layer goes only when no image refers to it."""
import json
import os
import shutil
import time

from minirun.errors import ImageNotFound, UsageError
from minirun.image.listing import human_size, tree_size
from minirun.image.store import check_config, normalize_name


def _images(store):
    """{image id: config} of every image in the store."""
    out = {}
    try:
        names = os.listdir(store.images)
    except FileNotFoundError:
        return out
    for name in names:
        if name.endswith(".json"):
            try:
                with open(os.path.join(store.images, name)) as f:
                    out["sha256:" + name[:-5]] = json.load(f)
            except (OSError, ValueError):
                continue
    return out


def _used_by_containers(store):
    from minirun.runtime.container import all_containers
    return {st.get("image_id"): cid for cid, _, st in all_containers(store)}


def remove_image(store, ref, force=False):
    """Docker's rmi: a name given loses that name; the image itself goes
    once it has no name left. A container's image stays, unless forced."""
    image_id = store.resolve_id(ref)
    lines = []
    with store.lock():
        names = store.names()
        mine = [n for n, i in names.items() if i == image_id]
        by_name = normalize_name(ref) in names
        user = _used_by_containers(store).get(image_id)
        if user and not force and (not by_name or len(mine) == 1):
            raise UsageError(f"unable to remove image {ref}: container {user[:12]} uses it "
                             f"(remove the container, or rmi -f)")
        if by_name and len(mine) > 1 and not force:
            del names[normalize_name(ref)]
            lines.append(f"Untagged: {normalize_name(ref)}")
        else:
            for n in mine:
                del names[n]
                lines.append(f"Untagged: {n}")
            lines.append(f"Deleted: {image_id}")
            os.unlink(os.path.join(store.images, image_id.split(":", 1)[1] + ".json"))
        store.save_names(names)
        lines += _remove_unused_layers(store)
    return lines


def _remove_unused_layers(store):
    """Remove the layers that neither an image nor a build cache entry
    refers to (an unreadable cache entry goes too)."""
    used = {d for c in _images(store).values() for d in c["rootfs"]["diff_ids"]}
    cache_dir = os.path.join(store.root, "cache")
    for entry in os.listdir(cache_dir) if os.path.isdir(cache_dir) else []:
        try:
            with open(os.path.join(cache_dir, entry)) as f:
                used.update(json.load(f)["rootfs"]["diff_ids"])
        except (OSError, ValueError, KeyError):
            os.unlink(os.path.join(cache_dir, entry))
    lines = []
    for entry in os.listdir(store.images) if os.path.isdir(store.images) else []:
        if entry.endswith(".size") and not os.path.exists(os.path.join(store.images,
                                                                       entry[:-5] + ".json")):
            os.unlink(os.path.join(store.images, entry))         # listing's summary of a gone image
    for hexpart in os.listdir(store.layers) if os.path.isdir(store.layers) else []:
        digest = "sha256:" + hexpart
        if digest in used:
            continue
        shutil.rmtree(os.path.join(store.layers, hexpart), ignore_errors=True)
        link = os.path.join(store.links, hexpart[:12])
        if os.path.islink(link):
            os.unlink(link)
        lines.append(f"Deleted: {digest}")
    remapped = os.path.join(store.root, "layers-remapped")     # --userns=remap's chowned copies
    for mapping in os.listdir(remapped) if os.path.isdir(remapped) else []:
        for hexpart in os.listdir(os.path.join(remapped, mapping)):
            if "sha256:" + hexpart not in used:
                shutil.rmtree(os.path.join(remapped, mapping, hexpart), ignore_errors=True)
    return lines


def prune(store, everything=False):
    """Unnamed images (all unused ones with -a), then the build cache and
    the layers nobody needs any more."""
    lines = []
    from minirun.runtime.container import sweep_dead_work
    sweep_dead_work(store)
    with store.lock():
        named = set(store.names().values())
        used = set(_used_by_containers(store))
        for image_id in _images(store):
            if image_id in used or (image_id in named and not everything):
                continue
            if image_id in named:
                lines += remove_image(store, image_id, force=True)
                continue
            os.unlink(os.path.join(store.images, image_id.split(":", 1)[1] + ".json"))
            lines.append(f"Deleted: {image_id}")
        shutil.rmtree(os.path.join(store.root, "cache"), ignore_errors=True)
        lines += _remove_unused_layers(store)
        _remove_idle_downloads(store)
    return lines


def _remove_idle_downloads(store):
    """Blobs a killed pull left in downloads/ (whole or .partial), unless a
    pull is at work on them now: it holds <hex>.lock while it does."""
    d = os.path.join(store.root, "downloads")
    entries = set(os.listdir(d)) if os.path.isdir(d) else set()
    for entry in entries:
        blob = entry.removesuffix(".partial")
        if not entry.endswith(".lock") and blob + ".lock" not in entries:
            try:
                os.unlink(os.path.join(d, entry))
            except FileNotFoundError:
                pass


def drop_build_cache(store):
    """`builder prune`: every build cache entry goes (and the layers only it
    kept), and the context checksums; how many cache entries there were."""
    with store.lock():
        cache_dir = os.path.join(store.root, "cache")
        count = len(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else 0
        shutil.rmtree(cache_dir, ignore_errors=True)
        shutil.rmtree(os.path.join(store.root, "checksums"), ignore_errors=True)
        _remove_unused_layers(store)
    return count


def repair(store):
    """Bring a damaged store back to one every command can use; returns
    what was done, a line each. What only `rm -f` should decide (a damaged
    container, which may still run) is named, not removed."""
    from minirun.runtime import container
    lines = []
    with store.lock():
        try:
            with open(store.repositories) as f:
                names = json.load(f)
            if not isinstance(names, dict):
                raise ValueError
        except FileNotFoundError:
            names = {}
        except ValueError:
            names = store.names_from_images()
            lines.append(f"rebuilt {store.repositories} from images/*.names: {len(names)} names")
        for entry in os.listdir(store.images) if os.path.isdir(store.images) else []:
            if not entry.endswith(".json"):
                continue
            image_id = "sha256:" + entry[:-5]
            try:
                store.config(image_id)
            except ImageNotFound:
                os.unlink(os.path.join(store.images, entry))
                lines.append(f"removed the damaged config of image {image_id[7:19]}")
        present = {"sha256:" + e[:-5] for e in os.listdir(store.images) if e.endswith(".json")} \
            if os.path.isdir(store.images) else set()
        for name in [n for n, i in names.items() if i not in present]:
            lines.append(f"untagged {name}: its image is gone")
            del names[name]
        store.save_names(names)
        for kind, directory, valid in (("build cache entry", "cache", _valid_json),
                                       ("seccomp program", "seccomp", _valid_program)):
            path = os.path.join(store.root, directory)
            for entry in os.listdir(path) if os.path.isdir(path) else []:
                if not valid(os.path.join(path, entry)):
                    os.unlink(os.path.join(path, entry))
                    lines.append(f"removed a damaged {kind}: {entry}")
        for entry in os.listdir(store.links) if os.path.isdir(store.links) else []:
            link = os.path.join(store.links, entry)
            if not os.path.isdir(link):
                os.unlink(link)
                lines.append(f"removed a broken layer link: l/{entry}")
        lines += _repair_settings_and_networks(store)
    for cid, _, st in container.all_containers(store):
        if st["status"] == "damaged":
            lines.append(f"container {cid[:12]} is damaged ({st['damage']}): "
                         f"`minirun rm -f {cid[:12]}` stops what it runs and removes it")
    return lines or ["nothing to repair"]


def _repair_settings_and_networks(store):
    """daemon.json set aside if damaged; damaged network definitions
    removed (the default one is made again on use); leases of containers
    that no longer exist given back (a RUN step in progress keeps its own)."""
    from minirun.errors import MinirunError
    from minirun.network.networks import Networks
    lines = []
    settings = os.path.join(store.root, "daemon.json")
    try:
        with open(settings) as f:
            json.load(f)
    except FileNotFoundError:
        pass
    except ValueError:
        os.replace(settings, settings + ".damaged")
        lines.append(f"set aside a damaged {settings} as daemon.json.damaged (defaults apply)")
    nets = Networks(store.root)
    alive = set(os.listdir(store.containers)) if os.path.isdir(store.containers) else set()
    for work in os.listdir(store.tmp) if os.path.isdir(store.tmp) else []:
        try:
            with open(os.path.join(store.tmp, work, "config.json")) as f:
                alive.add(json.load(f)["id"])
        except (OSError, ValueError, KeyError):
            continue
    for name in nets.names():
        try:
            nets.get(name)
        except MinirunError:
            os.unlink(nets._path(name))
            lines.append(f"removed the damaged definition of network {name}")
            continue
        leases = nets._leases_dir(name)
        for address in os.listdir(leases) if os.path.isdir(leases) else []:
            try:
                with open(os.path.join(leases, address)) as f:
                    owner = json.load(f).get("container")
            except (OSError, ValueError, AttributeError):
                owner = None               # damaged: nobody can use this lease
            if owner not in alive:
                os.unlink(os.path.join(leases, address))
                lines.append(f"gave back {address} on {name}: its container is gone")
    return lines


def _valid_json(path):
    try:
        with open(path) as f:
            check_config(json.load(f))
        return True
    except (OSError, ValueError):
        return False


def _valid_program(path):
    size = os.path.getsize(path)
    return size > 0 and size % 8 == 0


def history(store, ref, truncate=True):
    """(image, created, created by, size, comment) rows, newest first."""
    image = store.load(ref)
    diff_ids = list(image.config["rootfs"]["diff_ids"])
    rows = []
    layer = 0
    for entry in image.config.get("history") or []:
        size = 0
        if not entry.get("empty_layer") and layer < len(diff_ids):
            size = tree_size(store.layer_dir(diff_ids[layer]))
            layer += 1
        created_by = entry.get("created_by") or ""
        if truncate and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append(("<missing>", _ago(entry.get("created")), created_by, human_size(size),
                     entry.get("comment", "")))
    rows.reverse()
    if rows:
        rows[0] = (image.id.split(":", 1)[1][:12],) + rows[0][1:]
    return rows


def _ago(created):
    if not created:
        return ""
    try:
        t = time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return created
    from minirun.runtime.state import ago
    return ago(t) + " ago"
