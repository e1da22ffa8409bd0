"""The embedded `busybox` image, made from the host's static busybox by the
recipe in rootfs/busybox/ (see its README), and stored like any other image.

Only the first use builds it; what building needs is imported there."""
import json
import os

from minirun.image.store import normalize_name

RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "rootfs")
EMBEDDED = {"busybox:latest": "busybox"}
DIRS = ("bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr/bin", "usr/sbin", "sbin", "var")


def is_embedded(name):
    return normalize_name(name) in EMBEDDED


def find_busybox():
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(path):
            return path
    raise FileNotFoundError("busybox not found: install Debian's busybox-static (scripts/setup does)")


def build_busybox_tree(tree):
    """Lay out a busybox userland in the empty directory `tree`."""
    import shutil
    import subprocess
    recipe = os.path.join(RECIPES, "busybox")
    for d in DIRS:
        os.makedirs(os.path.join(tree, d), exist_ok=True)
    os.chmod(os.path.join(tree, "tmp"), 0o1777)
    os.chmod(os.path.join(tree, "root"), 0o700)
    busybox = find_busybox()
    shutil.copy2(busybox, os.path.join(tree, "bin/busybox"))
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    for rel in applets.stdout.split():
        link = os.path.join(tree, rel)
        if not os.path.lexists(link) and rel != "bin/busybox":
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("/bin/busybox", link)
    shutil.copytree(os.path.join(recipe, "files"), tree, dirs_exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (0, 0), follow_symlinks=False)
    os.utime(tree, (0, 0))
    with open(os.path.join(recipe, "image.json")) as f:
        return json.load(f)


def ensure_embedded(store, name):
    """Make the embedded image `name` in `store` unless it is already there."""
    name = normalize_name(name)
    if name in store.names():
        return
    import shutil
    from minirun.image.layers import diff_id
    with store.lock():
        if name in store.names():
            return
        tree = store.mkdtemp("busybox-")
        try:
            config = build_busybox_tree(tree)
            layer = store.add_layer(tree, diff_id(tree))
        finally:
            shutil.rmtree(tree, ignore_errors=True)
        config["rootfs"] = {"type": "layers", "diff_ids": [layer]}
        config["history"] = [{"created_by": "minirun: embedded busybox from the host's busybox-static",
                              "created": "1970-01-01T00:00:00Z"}]
        config["created"] = "1970-01-01T00:00:00Z"
        store.tag(name, store.add_image(config))


def load(store, ref):
    """store.load(ref), the embedded image made first if that is what `ref` names."""
    if is_embedded(ref):
        ensure_embedded(store, ref)
    return store.load(ref)
