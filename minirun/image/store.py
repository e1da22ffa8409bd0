"""The local image store, under the store root (default /var/lib/minirun):

    layers/<hex>/diff     an unpacked layer: an overlay lowerdir
    l/<12 hex>            a short symlink to it, to keep overlay's options short
    images/<hex>.json     an image config (OCI image config); <hex> is its sha256
    images/<hex>.size     its creation time and size, for `images` (worked out once)
    repositories.json     names → image ids, e.g. "busybox:latest" → "sha256:…"
    tmp/                  work in progress, renamed into place when complete
    cache/                the build cache (builder.py)
    cache-mounts/         RUN --mount=type=cache directories (runmounts.py)
    checksums/            context files' sha256 by their stat, per context (context.py)
    downloads/            blobs a pull verified, or is fetching (.partial) (distribution.py)
    distribution/         which registry blob holds which layer (distribution.py)
    certs.d/HOST:PORT/    a registry's own CA certificate (registry.py)

Everything that changes the store holds its lock and finishes with a rename,
so a crash leaves either the old state or the new, never half of one.

Reading is on every container's start path; the modules only writing needs
(hashlib, shutil) are imported where they are used.
"""
import fcntl
import json
import os
import re
import sys
from contextlib import contextmanager

from minirun.errors import ImageNotFound, UsageError
from minirun.linux.files import write_atomic
from minirun.record import Record

DEFAULT_ROOT = "/var/lib/minirun"


NAME_RE = (r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::\d+)?"     # compiled on first use
           r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$")


def check_name(name):
    """A reference as Docker accepts it: lower-case repository, optional :tag."""
    if not re.match(NAME_RE, name):
        raise UsageError(f"invalid reference format: {name!r} (repository names are "
                         f"lower-case; a tag is [A-Za-z0-9_.-], at most 128 characters)")


def normalize_name(name):
    """'busybox' → 'busybox:latest'; a tag or digest given is kept."""
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in last) else name + ":latest"


def check_config(config):
    """ValueError unless `config` is an image config minirun can use: a
    rootfs with a list of diff_ids (image files, cache entries alike)."""
    if not isinstance(config, dict) or not isinstance(config.get("rootfs"), dict) \
            or not isinstance(config["rootfs"].get("diff_ids"), list):
        raise ValueError("no rootfs.diff_ids")


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Image(Record):
    id: str            # "sha256:<hex>" of the config
    config: dict       # the OCI image config document
    layer_dirs: list   # bottom first, as in rootfs.diff_ids
    lower_links: list  # the same, as the short links overlayfs is given


class Store:
    def __init__(self, root=None):
        self.root = root or os.environ.get("MINIRUN_ROOT") or DEFAULT_ROOT
        self.layers = os.path.join(self.root, "layers")
        self.links = os.path.join(self.root, "l")
        self.images = os.path.join(self.root, "images")
        self.containers = os.path.join(self.root, "containers")
        self.tmp = os.path.join(self.root, "tmp")
        self.repositories = os.path.join(self.root, "repositories.json")
        self._lock_depth = 0
        self._warned = False

    def keep_private(self):
        """The store is root's alone (mode 0700): other local users must not
        read image configs, container state or logs, nor hold a lock file
        with flock(2) to hang every minirun command."""
        try:
            mode = os.stat(self.root).st_mode
        except FileNotFoundError:
            os.makedirs(self.root, 0o700, exist_ok=True)
            return
        if mode & 0o077:
            os.chmod(self.root, 0o700)

    def ensure_dirs(self):
        for d in (self.layers, self.images, self.containers, self.tmp):
            os.makedirs(d, exist_ok=True)

    @contextmanager
    def lock(self):
        """Serialize changes to the store between minirun processes — flock(2).
        Re-entrant within one process."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.ensure_dirs()
        with open(os.path.join(self.root, ".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    def mkdtemp(self, prefix):
        """tmp/<prefix><pid>-<random>: the pid tells dead_work whose it is.
        (tempfile.mkdtemp's loop: importing tempfile would cost each run more.)"""
        self.ensure_dirs()
        while True:
            path = os.path.join(self.tmp, f"{prefix}{os.getpid()}-{os.urandom(4).hex()}")
            try:
                os.mkdir(path, 0o700)
                return path
            except FileExistsError:
                continue

    def dead_work(self):
        """Paths in tmp/ whose owner (the pid in the name) has died: a
        SIGKILLed build's or create's work in progress, a removal cut short."""
        from minirun.linux.process import process_start_time
        try:
            entries = os.listdir(self.tmp)
        except FileNotFoundError:
            return []
        dead = []
        for entry in entries:
            pid = entry.rsplit("-", 2)[-2] if entry.count("-") >= 2 else ""
            if pid.isdigit() and process_start_time(int(pid)) is None:
                dead.append(os.path.join(self.tmp, entry))
        return dead

    # --- names ---------------------------------------------------------
    # repositories.json maps every name to its image. Each image's own names
    # are also kept beside its config (images/<hex>.names), so that a
    # damaged repositories.json can be rebuilt from the store (`repair`).
    def names(self):
        try:
            with open(self.repositories) as f:
                names = json.load(f)
            if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
                raise ValueError("not a map of names to image ids")
            return names
        except FileNotFoundError:
            return {}
        except ValueError as e:
            if not self._warned:
                self._warned = True
                sys.stderr.write(f"minirun: warning: {self.repositories} is damaged ({e}): names "
                                 f"read from images/*.names instead; `minirun repair` rewrites it\n")
            return self.names_from_images()

    def names_from_images(self):
        """The names as each image's .names file records them; where two
        claim a name, the later write wins."""
        claims = []
        for entry in os.listdir(self.images) if os.path.isdir(self.images) else []:
            if entry.endswith(".names"):
                path = os.path.join(self.images, entry)
                try:
                    with open(path) as f:
                        names = json.load(f)
                    claims.append((os.stat(path).st_mtime, "sha256:" + entry[:-6], names))
                except (OSError, ValueError):
                    continue
        rebuilt = {}
        for _, image_id, names in sorted(claims):
            for name in names if isinstance(names, list) else []:
                rebuilt[name] = image_id
        return rebuilt

    def tag(self, name, image_id):
        with self.lock():
            names = self.names()
            names[normalize_name(name)] = image_id
            self.save_names(names)

    def save_names(self, names):
        """Replace repositories.json, and the .names file of each image
        whose names changed; the caller holds the lock."""
        old = self.names()
        write_atomic(self.repositories, json.dumps(names, indent=1, sort_keys=True))
        for image_id in {i for n, i in names.items() if old.get(n) != i} | \
                {i for n, i in old.items() if names.get(n) != i}:
            path = os.path.join(self.images, image_id.split(":", 1)[1] + ".names")
            mine = sorted(n for n, i in names.items() if i == image_id)
            if mine:
                write_atomic(path, json.dumps(mine))
            elif os.path.exists(path):
                os.unlink(path)

    # --- layers and images ----------------------------------------------
    def layer_dir(self, diff_id):
        return os.path.join(self.layers, diff_id.split(":", 1)[1], "diff")

    def layer_link(self, diff_id):
        """l/<first 12 hex> → ../layers/<hex>/diff, made on first use."""
        hexpart = diff_id.split(":", 1)[1]
        link = os.path.join(self.links, hexpart[:12])
        if not os.path.isdir(link):          # missing, or broken: (re)made
            if not os.path.isdir(self.layer_dir(diff_id)):
                raise ImageNotFound(f"its layer {hexpart[:12]} is missing from the store")
            os.makedirs(self.links, exist_ok=True)
            tmp = f"{link}.tmp-{os.getpid()}"
            os.symlink(os.path.join("..", "layers", hexpart, "diff"), tmp)
            os.replace(tmp, link)
        return link

    def chowned_layer(self, diff_id, uid_base, gid_base):
        """--userns=remap without idmapped mounts: a copy of the layer with
        every owner moved into the range starting at uid_base/gid_base,
        made once and kept: layers-remapped/<uid>-<gid>/<hex>/diff."""
        hexpart = diff_id.split(":", 1)[1]
        final = os.path.join(self.root, "layers-remapped", f"{uid_base}-{gid_base}", hexpart)
        if not os.path.isdir(final):
            import subprocess
            from minirun.image.layers import shift_owners
            staging = self.mkdtemp("chown-")
            # cp -a keeps what a layer is made of: whiteout devices, the
            # overlay's xattrs, hard links, modes and times.
            subprocess.run(["cp", "-a", self.layer_dir(diff_id), os.path.join(staging, "diff")],
                           check=True)
            shift_owners(os.path.join(staging, "diff"), uid_base, gid_base)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            try:
                os.rename(staging, final)
            except OSError:          # another process made it meanwhile
                import shutil
                shutil.rmtree(staging)
        return os.path.join(final, "diff")

    def add_layer(self, tree, diff_id):
        """Move the unpacked `tree` into the store as layer `diff_id`; an
        identical layer already there is kept and `tree` discarded."""
        final = os.path.dirname(self.layer_dir(diff_id))
        staging = self.mkdtemp("layer-")
        os.rename(tree, os.path.join(staging, "diff"))
        try:
            os.rename(staging, final)
        except OSError:  # already stored: content addressing makes them equal
            import shutil
            shutil.rmtree(staging)
        return diff_id

    def add_image(self, config, made=None):
        """Store `config`; its id. The id is appended to the list `made`
        when this call is the one that wrote it."""
        import hashlib
        data = canonical_json(config)
        image_id = "sha256:" + hashlib.sha256(data).hexdigest()
        path = os.path.join(self.images, image_id.split(":", 1)[1] + ".json")
        if not os.path.exists(path):
            self.ensure_dirs()
            write_atomic(path, data)
            if made is not None:
                made.append(image_id)
        return image_id

    def resolve_id(self, ref):
        """A name, a full id or a unique id prefix → the image id."""
        names = self.names()
        if normalize_name(ref) in names:
            return names[normalize_name(ref)]
        hexpart = ref.split(":", 1)[1] if ref.startswith("sha256:") else ref
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
            try:
                matches = [f[:-5] for f in os.listdir(self.images)
                           if f.startswith(hexpart) and f.endswith(".json")]
            except FileNotFoundError:
                matches = []
            if len(matches) == 1:
                return "sha256:" + matches[0]
        raise ImageNotFound(f"unable to find image '{ref}' in the local store "
                            f"(see `minirun images`)")

    def load(self, ref):
        return self.load_id(self.resolve_id(ref))

    def load_id(self, image_id):
        """The image with this full id, its layers checked to be there."""
        config = self.config(image_id)
        diff_ids = config["rootfs"]["diff_ids"]
        try:
            links = [self.layer_link(d) for d in diff_ids]     # one stat a layer, when all is well
        except ImageNotFound as e:
            raise ImageNotFound(f"image {image_id[7:19]} is damaged: {e}; load or build it again, "
                                f"or `minirun rmi -f {image_id[7:19]}`") from None
        return Image(image_id, config, [self.layer_dir(d) for d in diff_ids], links)

    def config(self, image_id):
        """An image's config, checked to be one: a damaged file is one line."""
        path = os.path.join(self.images, image_id.split(":", 1)[1] + ".json")
        try:
            with open(path) as f:
                config = json.load(f)
            check_config(config)
            return config
        except ValueError as e:
            raise ImageNotFound(f"image {image_id[7:19]} is damaged: {path}: {e}; remove it "
                                f"with `minirun rmi -f {image_id[7:19]}`") from None
