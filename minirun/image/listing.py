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


def image_rows(store):
    """(repository, tag, short id, created, size) for every named image."""
    rows = []
    from minirun.errors import ImageNotFound
    for name, image_id in sorted(store.names().items()):
        repo, _, tag = name.rpartition(":")
        if "@" in name:                  # pulled by digest: no tag
            repo, tag = name.split("@")[0], "<none>"
        try:
            config = store.config(image_id)
        except (ImageNotFound, OSError):
            rows.append((repo, tag, image_id.split(":", 1)[1][:12], "(damaged: see minirun repair)", "-"))
            continue
        size = sum(tree_size(store.layer_dir(d)) for d in config["rootfs"]["diff_ids"])
        rows.append((repo, tag, image_id.split(":", 1)[1][:12], config.get("created", ""), human_size(size)))
    return rows
