"""Rows for `minirun images`."""
import os


def tree_size(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def human_size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"


def image_summary(store, image_id):
    """(created, size) of an image, kept in images/<hex>.size once worked
    out: an image and its layers never change, and `images` on a store of
    hundreds must not walk every layer's files each time."""
    from minirun.linux.files import write_atomic
    path = os.path.join(store.images, image_id.split(":", 1)[1] + ".size")
    try:
        with open(path, "rb") as f:      # bytes: no text layer per image (hundreds of them)
            created, size = f.read().decode().split("\t")
        return created, int(size)
    except (OSError, ValueError):
        pass
    config = store.config(image_id)
    size = sum(tree_size(store.layer_dir(d)) for d in config["rootfs"]["diff_ids"])
    created = config.get("created", "")
    try:
        write_atomic(path, f"{created}\t{size}")
    except OSError:
        pass
    return created, size


def image_rows(store):
    """(repository, tag, short id, created, size) for every named image."""
    rows = []
    from minirun.errors import ImageNotFound
    for name, image_id in sorted(store.names().items()):
        repo, _, tag = name.rpartition(":")
        if "@" in name:                  # pulled by digest: no tag
            repo, tag = name.split("@")[0], "<none>"
        try:
            created, size = image_summary(store, image_id)
        except (ImageNotFound, OSError):
            rows.append((repo, tag, image_id.split(":", 1)[1][:12], "(damaged: see minirun repair)", "-"))
            continue
        rows.append((repo, tag, image_id.split(":", 1)[1][:12], created, human_size(size)))
    return rows
