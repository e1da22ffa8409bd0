"""Images in and out of the store as archives other tools read:

    docker   the `docker save` layout: manifest.json, <config hex>.json and
             <layer>/layer.tar per layer — what `docker load` accepts
    oci      an OCI image layout (oci-layout, index.json, blobs/sha256/...),
             packed in a tar

`load` reads both, compressed layers included, and checks every layer
against the diff_id its config claims. `import` makes a one-layer image from
a plain root filesystem tar. All unpacking goes through layers.unpack_tar,
which keeps every entry inside its layer.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time

from minirun.errors import MinirunError
from minirun.image import layers as layerfs
from minirun.image.store import canonical_json, normalize_name

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


class ArchiveError(MinirunError):
    pass


# --- save ---------------------------------------------------------------------------

def save(store, refs, out_path, fmt="docker"):
    """Write the images `refs` to `out_path` (via a temporary file, renamed
    when complete)."""
    images = []
    for ref in refs:
        image = store.load(ref)
        names = [n for n, i in store.names().items() if i == image.id]
        wanted = normalize_name(ref) if normalize_name(ref) in names else None
        images.append((image, [wanted] if wanted else names))
    refuse_to_replace_a_non_file(out_path)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    try:
        f = open(tmp, "wb")
    except OSError as e:
        raise ArchiveError(f"cannot write {out_path}: {e.strerror}") from None
    scratch = store.mkdtemp("save-")
    try:
        with f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as out:
            write = _save_docker if fmt == "docker" else _save_oci
            write(store, images, out, _Layers(store, out, scratch))
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def refuse_to_replace_a_non_file(path):
    """save -o writes through an existing path only when it is a regular
    file, as `docker save` does: the rename that finishes the archive would
    otherwise replace a device node, a symlink (not its target) or a directory."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        kind = ("a symlink" if stat.S_ISLNK(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode)
                else "a device or special file")
        raise ArchiveError(f"cannot write {path}: it is {kind}, not a regular file")


def _add_bytes(out, name, data):
    _add_file(out, name, io.BytesIO(data), len(data))


def _add_file(out, name, f, size):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    out.addfile(info, f)


class _Layers:
    """Puts each layer into the archive once, as its canonical tar (checked
    against its diff_id on the way), and remembers its size."""

    def __init__(self, store, out, scratch):
        self.store, self.out, self.scratch = store, out, scratch
        self.sizes = {}

    def put(self, diff_id, name):
        if diff_id not in self.sizes:
            with tempfile.TemporaryFile(dir=self.scratch) as f:
                size = layerfs.write_layer_tar(self.store.layer_dir(diff_id), diff_id, f)
                f.seek(0)
                _add_file(self.out, name, f, size)
            self.sizes[diff_id] = size
        return self.sizes[diff_id]


def _save_docker(store, images, out, layers):
    manifest = []
    for image, names in images:
        config_name = image.id.split(":", 1)[1] + ".json"
        _add_bytes(out, config_name, canonical_json(image.config))
        paths = [f"{d.split(':', 1)[1]}/layer.tar" for d in image.config["rootfs"]["diff_ids"]]
        for diff_id, path in zip(image.config["rootfs"]["diff_ids"], paths):
            layers.put(diff_id, path)
        manifest.append({"Config": config_name, "RepoTags": names, "Layers": paths})
    _add_bytes(out, "manifest.json", json.dumps(manifest).encode())


def _save_oci(store, images, out, layers):
    index, written = [], set()

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest not in written:
            _add_bytes(out, _blob_path(digest), data)
            written.add(digest)
        return {"digest": digest, "size": len(data)}

    _add_bytes(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    for image, names in images:
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                    "config": {"mediaType": MEDIA_CONFIG, **blob(canonical_json(image.config))},
                    "layers": [{"mediaType": MEDIA_LAYER, "digest": d,
                                "size": layers.put(d, _blob_path(d))}
                               for d in image.config["rootfs"]["diff_ids"]]}
        ref = blob(canonical_json(manifest))
        for name in names or [None]:
            entry = {"mediaType": MEDIA_MANIFEST, **ref}
            if name:
                entry["annotations"] = {REF_ANNOTATION: name.rsplit(":", 1)[1],
                                        "io.containerd.image.name": name}
            index.append(entry)
    _add_bytes(out, "index.json", json.dumps({"schemaVersion": 2, "manifests": index}).encode())


# --- load and import ----------------------------------------------------------------

class _Hashing:
    """A reader that hashes what passes through it."""
    def __init__(self, f):
        self.f = f
        self.hash = hashlib.sha256()

    def read(self, n=-1):
        data = self.f.read(n)
        self.hash.update(data)
        return data

    def drain(self):
        while self.read(1 << 20):
            pass
        return "sha256:" + self.hash.hexdigest()


def decompressed(f):
    """A layer as a plain tar stream, whether it is gzip, zstd or neither —
    told by its first bytes (magic numbers), as the OCI image spec allows."""
    head = f.peek(4)[:4] if hasattr(f, "peek") else b""
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f)
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(f, read_size=1 << 20)
    return f


def store_layer(store, fileobj, expected=None, layer=True):
    """Unpack one layer stream into the store; its diff_id (our canonical
    tar's digest, which is also the stream's when it came from us).
    `expected`: the diff_id the image config claims, checked before the
    layer enters the store."""
    tree = store.mkdtemp("load-")
    try:
        stream = _Hashing(decompressed(io.BufferedReader(fileobj, 1 << 20)))
        layerfs.unpack_tar(stream, tree, layer=layer)
        got = stream.drain()
        if expected is not None and got != expected:
            raise ArchiveError(f"a layer does not match its diff_id in the image config: "
                               f"{got[:19]}… is not {expected[:19]}…")
        digest = layerfs.diff_id(tree)
        with store.lock():
            store.add_layer(tree, digest)
        store.layer_link(digest)
        return digest
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def _member(tar, name, what):
    try:
        f = tar.extractfile(name.lstrip("./") if name.startswith("./") else name)
    except KeyError:
        f = None
    if f is None:
        raise ArchiveError(f"the archive lacks {what} {name!r}")
    return f


def load(store, path):
    """Read a docker-archive or OCI-layout tar; returns [(image id, names)].
    Layers of a damaged archive that were read whole stay (they are complete
    and content-addressed); no image is recorded without all of its layers."""
    try:
        return _load(store, path)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, json.JSONDecodeError) as e:
        raise ArchiveError(f"{path}: damaged archive: {e}") from None


def _load(store, path):
    if not path:
        raise ArchiveError("load: give the archive with -i FILE (an empty name was given)")
    try:
        tar = tarfile.open(path)
    except OSError as e:
        raise ArchiveError(f"cannot read {path}: {e.strerror}") from None
    except tarfile.TarError:
        raise ArchiveError(f"cannot read {path}: not a tar archive (plain, gzip, bzip2 or xz)") \
            from None
    with tar:
        names = set(tar.getnames())
        if "manifest.json" in names:
            entries = json.load(_member(tar, "manifest.json", "file"))
            plan = [(e["Config"], e["Layers"], e.get("RepoTags") or []) for e in entries]
        elif "index.json" in names:
            plan = _oci_plan(tar)
        else:
            raise ArchiveError(f"{path} is neither a docker save archive (manifest.json) "
                               f"nor an OCI image layout (index.json)")
        loaded = []
        for config_name, layer_names, tags in plan:
            config = json.load(_member(tar, config_name, "image config"))
            diff_ids = config.get("rootfs", {}).get("diff_ids") or []
            if len(diff_ids) != len(layer_names):
                raise ArchiveError(f"{config_name}: {len(diff_ids)} diff_ids for "
                                   f"{len(layer_names)} layers")
            ours = [store_layer(store, _member(tar, name, "layer"), expected)
                    for name, expected in zip(layer_names, diff_ids)]
            config["rootfs"]["diff_ids"] = ours
            image_id = store.add_image(config)
            for tag in tags:
                store.tag(tag, image_id)
            loaded.append((image_id, tags))
        return loaded


def _oci_plan(tar):
    index = json.load(_member(tar, "index.json", "file"))
    plan = []
    for desc in index.get("manifests", []):
        manifest = json.load(_member(tar, _blob_path(desc["digest"]), "manifest"))
        if "manifests" in manifest:           # a nested index
            desc = manifest["manifests"][0]
            manifest = json.load(_member(tar, _blob_path(desc["digest"]), "manifest"))
        annotations = desc.get("annotations") or {}
        name = annotations.get("io.containerd.image.name")
        tag = annotations.get(REF_ANNOTATION)
        tags = [name] if name else ([f"loaded:{tag}"] if tag and ":" not in tag else
                                    [tag] if tag else [])
        plan.append((_blob_path(manifest["config"]["digest"]),
                     [_blob_path(layer["digest"]) for layer in manifest["layers"]], tags))
    return plan


def _blob_path(digest):
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not hexpart.isalnum():
        raise ArchiveError(f"unsupported digest {digest!r}")
    return f"blobs/sha256/{hexpart}"


def import_rootfs(store, path, name):
    """`docker import`: one layer from a root filesystem tar, an empty config."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ArchiveError(f"cannot read {path}: {e.strerror}") from None
    with f:
        try:
            digest = store_layer(store, f, layer=False)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile) as e:
            raise ArchiveError(f"{path}: not a tar archive ({e})") from None
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    from minirun.image.builder import new_config
    config = {"architecture": new_config()["architecture"], "os": "linux", "created": created,
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [digest]},
              "history": [{"created": created, "created_by": f"minirun import {os.path.basename(path)}"}]}
    image_id = store.add_image(config)
    store.tag(name, image_id)
    return image_id
