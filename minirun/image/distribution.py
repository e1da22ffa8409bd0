"""pull and push: images between a registry and the store. registry.py
speaks the protocol; this module decides what to ask for and what to keep.

pull  NAME[:TAG|@DIGEST]
  1. the manifest; from an index (a multi-platform image), the one for our
     platform; pinned by digest, the bytes must hash to it
  2. the config blob, verified against its digest
  3. the layers, several at once: each blob is downloaded into downloads/
     (resuming a .partial file left by an interrupted pull), verified
     against its digest, unpacked (gzip, zstd or plain), checked against the
     config's diff_id, and only then moved into layers/
  4. the image config and its name — last, so an interrupted pull leaves
     no image, only verified blobs and whole layers for the next one

push  NAME[:TAG]
  each layer as a gzip blob, unless the registry has it (HEAD) or can
  mount it from another repository where we pulled or pushed it; then the
  config and the manifest.

distribution/ remembers which registry blob holds which layer (pulled or
pushed), so neither direction moves a layer twice.
"""
import fcntl
import json
import os
import re
import sys

from minirun.errors import ImageNotFound, RegistryError, UsageError
from minirun.image.store import canonical_json
from minirun.linux.files import write_atomic

# On the start path, only obtain() runs, and only for an image already in
# the store: references, hashlib, the HTTP client, the threads and the
# progress display are imported when something is pulled or pushed.

PARALLEL = 3                 # layers moved at once, as dockerd's default
MACHINES = {"x86_64": ("amd64", None), "aarch64": ("arm64", None), "armv7l": ("arm", "v7"),
            "armv6l": ("arm", "v6"), "i686": ("386", None), "ppc64le": ("ppc64le", None),
            "s390x": ("s390x", None), "riscv64": ("riscv64", None)}


def parse_platform(text):
    """`linux/amd64`, `linux/arm/v7` → (os, architecture, variant); None: this machine's."""
    if text is None:
        arch, variant = MACHINES.get(os.uname().machine, (os.uname().machine, None))
        return "linux", arch, variant
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--platform {text!r}: give OS/ARCH[/VARIANT], e.g. linux/amd64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def platform_text(p):
    return "/".join(x for x in p if x)


class Records:
    """distribution/<layer hex>.json: the registry blobs known to hold a
    layer ({digest, size, mediaType, repository}); distribution/by-blob/<hex>:
    the layer a blob unpacks to."""

    def __init__(self, store):
        self.dir = os.path.join(store.root, "distribution")

    def layer_of(self, blob_digest):
        """The layer's diff_id, or None (unknown, or a damaged record)."""
        try:
            with open(os.path.join(self.dir, "by-blob", blob_digest.split(":", 1)[1])) as f:
                diff_id = f.read().strip()
        except OSError:
            return None
        return diff_id if re.fullmatch(r"sha256:[0-9a-f]{64}", diff_id) else None

    def blobs_of(self, diff_id):
        try:
            with open(os.path.join(self.dir, diff_id.split(":", 1)[1] + ".json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return []

    def remember(self, diff_id, desc, repository):
        os.makedirs(os.path.join(self.dir, "by-blob"), exist_ok=True)
        entry = {"digest": desc["digest"], "size": desc["size"], "mediaType": desc["mediaType"],
                 "repository": repository}
        known = [b for b in self.blobs_of(diff_id)
                 if (b.get("digest"), b.get("repository")) != (entry["digest"], repository)]
        write_atomic(os.path.join(self.dir, diff_id.split(":", 1)[1] + ".json"),
                     json.dumps([entry] + known[:20]))
        write_atomic(os.path.join(self.dir, "by-blob", desc["digest"].split(":", 1)[1]), diff_id)


def connect(store, domain):
    from minirun.image import credentials, registry
    return registry.Registry(domain, store.root, credentials.lookup(domain))


# --- pull ------------------------------------------------------------------------------------

def pull(store, text, platform=None, quiet=False, out=None):
    """Pull `text` into the store; returns the image id."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from minirun.image import registry
    from minirun.image.progress import Progress
    from minirun.image import reference
    ref = reference.parse(text)
    want = parse_platform(platform)
    progress = Progress(quiet, out)
    reg = connect(store, ref.domain)
    progress.say(f"{ref.reference}: Pulling from {ref.familiar}")
    data, media = fetch_manifest(reg, ref)
    top_digest = sha256(data)
    manifest = _json(data, ref, "manifest")
    if media in registry.INDEXES or "manifests" in manifest:
        chosen = choose_platform(manifest, want, platform is not None, ref)
        data, media = fetch_manifest(reg, ref, chosen["digest"])
        manifest = _json(data, ref, "manifest")
    check_manifest(manifest, media, ref)
    config_bytes = fetch_blob_bytes(reg, ref.path, manifest["config"])
    config = _json(config_bytes, ref, "image config")
    check_config_platform(config, want, platform is not None, ref)
    layers = manifest.get("layers") or []
    diff_ids = config.get("rootfs", {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise RegistryError(f"{ref}: the manifest lists {len(layers)} layers, the config "
                            f"{len(diff_ids or [])} diff_ids")
    records = Records(store)
    cancel = threading.Event()
    store.ensure_dirs()
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(fetch_layer, store, reg, ref.path, desc, expected, records,
                               progress, cancel)
                   for desc, expected in zip(layers, diff_ids)]
        try:
            ours = [f.result() for f in futures]
        except BaseException:          # ^C or a bad layer: the others stop at their next chunk
            cancel.set()
            raise
    config["rootfs"]["diff_ids"] = ours
    with store.lock():
        made = []
        image_id = store.add_image(config, made)
        before = store.names().get(ref.local_name)
        store.tag(ref.local_name, image_id)
    progress.say(f"Digest: {top_digest}")
    news = "Image is up to date" if before == image_id and not made else "Downloaded newer image"
    progress.say(f"Status: {news} for {ref.local_name}")
    return image_id


def sha256(data):
    import hashlib
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(data, ref, what):
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{ref}: the registry sent a {what} that is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{ref}: the registry sent a {what} that is not a JSON object")
    return doc


def fetch_manifest(reg, ref, digest=None):
    """A manifest's bytes and media type; one asked for by digest must hash to it."""
    from minirun.image import registry
    digest = digest or ref.digest
    data, media = reg.get_manifest(ref.path, digest or ref.tag)
    if media in registry.SCHEMA1:
        raise RegistryError(f"{ref}: the registry offers only a Docker schema 1 manifest, a "
                            f"format retired in 2019 that minirun does not read; push the "
                            f"image again with a current tool")
    if digest and sha256(data) != digest:
        raise RegistryError(f"{ref}: the manifest does not match its digest {digest[:19]}…: "
                            f"nothing was stored")
    return data, media


def choose_platform(index, want, asked, ref):
    """From an index (manifest list), the manifest for platform `want`; a
    variant is matched when both sides name one."""
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    have = []
    for m in entries:
        p = m.get("platform") or {}
        have.append(platform_text((p.get("os"), p.get("architecture"), p.get("variant"))))
        if (p.get("os"), p.get("architecture")) == want[:2] and \
                (want[2] is None or p.get("variant") in (None, want[2])):
            return m
    raise RegistryError(f"{ref}: no image for {platform_text(want)} in its index (it has: "
                        f"{', '.join(h for h in have if h) or 'no platforms'})"
                        + ("" if asked else "; choose one with --platform"))


def check_manifest(manifest, media, ref):
    from minirun.image import registry
    if manifest.get("schemaVersion") == 1:
        raise RegistryError(f"{ref}: a Docker schema 1 manifest, a format retired in 2019 that "
                            f"minirun does not read")
    if media not in registry.MANIFESTS and manifest.get("mediaType") not in registry.MANIFESTS:
        raise RegistryError(f"{ref}: not an image manifest (media type {media or 'none'!r})")
    if not isinstance(manifest.get("config"), dict) or "digest" not in manifest["config"]:
        raise RegistryError(f"{ref}: the manifest names no config")


def check_config_platform(config, want, asked, ref):
    got = (config.get("os"), config.get("architecture"))
    if asked and got != want[:2]:
        raise RegistryError(f"{ref}: the image is for {platform_text(got)}, not the "
                            f"{platform_text(want)} asked for")


def fetch_blob_bytes(reg, repo, desc):
    r = reg.open_blob(repo, desc["digest"])
    data = r.content
    if sha256(data) != desc["digest"]:
        raise RegistryError(f"{reg.domain}/{repo}: blob {desc['digest'][:19]}… does not match its "
                            f"digest (corrupted in the registry or on the way): nothing was stored")
    return data


def fetch_layer(store, reg, repo, desc, expected, records, progress, cancel):
    """One layer, into the store if it is not there already; our diff_id for it."""
    from minirun.image import archive
    key = desc["digest"].split(":", 1)[1][:12]
    progress.update(key, "Waiting")
    with _blob_lock(store, desc["digest"]):      # another pull of the same blob waits here
        ours = records.layer_of(desc["digest"])
        if ours and os.path.isdir(store.layer_dir(ours)):
            progress.update(key, "Already exists")
            return ours
        path = download(store, reg, repo, desc, key, progress, cancel)
        progress.update(key, "Extracting")
        try:
            with open(path, "rb") as f:
                ours = archive.store_layer(store, f, expected=expected)
        except archive.ArchiveError as e:
            raise RegistryError(f"{reg.domain}/{repo}: layer {key}: {e}") from None
        except Exception as e:      # a blob that is not a (compressed) tar
            raise RegistryError(f"{reg.domain}/{repo}: layer {key} is not a tar archive "
                                f"({type(e).__name__}: {e})") from None
        records.remember(ours, desc, f"{reg.domain}/{repo}")
        os.unlink(path)
        progress.update(key, "Pull complete")
        return ours


def _blob_lock(store, digest):
    """flock(2) on downloads/<hex>.lock: one process moves a given blob at a time."""
    from contextlib import contextmanager

    @contextmanager
    def held():
        d = os.path.join(store.root, "downloads")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, digest.split(":", 1)[1] + ".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                # Whoever waits on this file re-checks the records once it has
                # the lock; the layer's rename into layers/ keeps it stored once.
                try:
                    os.unlink(f.name)
                except FileNotFoundError:     # a waiter before us removed it
                    pass
    return held()


def download(store, reg, repo, desc, key, progress, cancel):
    """downloads/<hex>, verified against the digest. A .partial file from an
    interrupted pull is resumed (HTTP Range); a blob that does not hash to
    its digest is deleted, never kept."""
    digest, size = desc["digest"], desc.get("size")
    final = os.path.join(store.root, "downloads", digest.split(":", 1)[1])
    if os.path.exists(final):
        return final                         # verified by the pull that fetched it
    partial = final + ".partial"
    import hashlib
    h = hashlib.sha256()
    done = 0
    if os.path.exists(partial):
        with open(partial, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                done += len(chunk)
    r = reg.open_blob(repo, digest, offset=done)
    if r.status_code == 200 and done:        # the registry ignored Range: from the start
        h, done = hashlib.sha256(), 0
    if done:
        progress.update(key, f"Resuming at {done} bytes")
    with r, open(partial, "ab" if done else "wb") as f:
        progress.update(key, "Downloading", done, size)
        for chunk in r.iter_content(1 << 20):
            if cancel.is_set():
                raise KeyboardInterrupt
            f.write(chunk)
            h.update(chunk)
            done += len(chunk)
            progress.update(key, "Downloading", done, size)
    progress.update(key, "Verifying Checksum")
    if "sha256:" + h.hexdigest() != digest or (size is not None and done != size):
        os.unlink(partial)
        raise RegistryError(f"{reg.domain}/{repo}: blob {digest[:19]}… does not match its digest "
                            f"(corrupted in the registry or on the way): nothing was stored")
    os.rename(partial, final)
    progress.update(key, "Download complete")
    return final


def obtain(store, ref, policy="missing", quiet=False, platform=None):
    """The image `ref` names for run, create and build's FROM, pulled when
    `policy` says so: missing (if not in the store), always, never."""
    from minirun.image import embedded
    if embedded.is_embedded(ref):
        return embedded.load(store, ref)
    if policy != "always":
        image_id = _stored_id(store, ref)
        if image_id is not None:
            return store.load_id(image_id)   # a damaged image says so here: no pull
        if policy == "never":
            return store.load(ref)           # its "unable to find" line
    from minirun.image import reference
    local = reference.parse(ref).local_name
    if policy != "always":
        image_id = _stored_id(store, local)
        if image_id is not None:
            return store.load_id(image_id)
        if not quiet:
            sys.stderr.write(f"Unable to find image '{local}' locally\n")
    pull(store, ref, platform=platform, quiet=quiet, out=sys.stderr)
    return store.load(local)


def _stored_id(store, ref):
    """The id of the image `ref` names in the store, or None."""
    try:
        return store.resolve_id(ref)
    except ImageNotFound:
        return None


# --- push ------------------------------------------------------------------------------------

def push(store, text, quiet=False):
    """Push the local image `text` names; returns the manifest's digest."""
    from concurrent.futures import ThreadPoolExecutor
    from minirun.image import registry
    from minirun.image import reference
    from minirun.image.progress import Progress
    ref = reference.parse(text)
    if ref.digest:
        raise UsageError(f"push {text}: push a tag, not a digest")
    try:
        image = store.load(ref.local_name)
    except ImageNotFound:
        raise ImageNotFound(f"no local image {ref.local_name!r} to push (tag one: "
                            f"minirun tag IMAGE {ref.local_name})") from None
    progress = Progress(quiet)
    reg = connect(store, ref.domain)
    progress.say(f"The push refers to repository [{ref.domain}/{ref.path}]")
    records = Records(store)
    with ThreadPoolExecutor(PARALLEL) as pool:
        layers = list(pool.map(lambda d: push_layer(store, reg, ref.path, d, records, progress),
                               image.config["rootfs"]["diff_ids"]))
    config = canonical_json(image.config)
    config_desc = {"mediaType": registry.DOCKER_CONFIG, "size": len(config), "digest": sha256(config)}
    if not reg.has_blob(ref.path, config_desc["digest"], registry.push_scope(ref.path)):
        import io
        reg.upload_blob(ref.path, config_desc["digest"], io.BytesIO(config), len(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": registry.DOCKER_MANIFEST,
                           "config": config_desc, "layers": layers}, indent=3).encode()
    reg.put_manifest(ref.path, ref.tag, manifest, registry.DOCKER_MANIFEST)
    digest = sha256(manifest)
    progress.say(f"{ref.tag}: digest: {digest} size: {len(manifest)}")
    return digest


def push_layer(store, reg, repo, diff_id, records, progress):
    """One layer: already there (HEAD), mounted from a repository of the
    same registry that has it, or uploaded as gzip. Its descriptor."""
    from minirun.image import registry
    key = diff_id.split(":", 1)[1][:12]
    scope = registry.push_scope(repo)
    progress.update(key, "Preparing")
    location = None
    for known in records.blobs_of(diff_id):
        if known.get("mediaType") != registry.DOCKER_LAYER_GZIP and \
                not str(known.get("mediaType", "")).endswith("gzip"):
            continue                        # only gzip goes out: every registry takes it
        desc = {k: known[k] for k in ("mediaType", "digest", "size")}
        if reg.has_blob(repo, desc["digest"], scope):
            progress.update(key, "Layer already exists")
            return desc
        source_domain, _, source = known.get("repository", "").partition("/")
        if source_domain == reg.domain and source and source != repo:
            location = reg.mount_blob(repo, desc["digest"], source)
            if location is None:
                progress.update(key, f"Mounted from {source}")
                records.remember(diff_id, desc, f"{reg.domain}/{repo}")
                return desc
    import tempfile
    with tempfile.TemporaryFile(dir=store.tmp) as f:
        desc = compress_layer(store, diff_id, f)
        if reg.has_blob(repo, desc["digest"], scope):
            progress.update(key, "Layer already exists")
        else:
            f.seek(0)
            progress.update(key, "Pushing", 0, desc["size"])
            reg.upload_blob(repo, desc["digest"], f, desc["size"], location,
                            progress=lambda n: progress.update(key, "Pushing", n, desc["size"]))
            progress.update(key, "Pushed")
    records.remember(diff_id, desc, f"{reg.domain}/{repo}")
    return desc


def compress_layer(store, diff_id, f):
    """The layer's canonical tar, gzipped into `f` with no name and no
    time in the header: the same layer always makes the same blob."""
    from minirun.image import registry
    import gzip
    from minirun.image import layers as layerfs
    out = layerfs.HashWriter(f)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as z:
        layerfs.write_layer_tar(store.layer_dir(diff_id), diff_id, z)
    return {"mediaType": registry.DOCKER_LAYER_GZIP, "digest": out.digest(), "size": out.size}
