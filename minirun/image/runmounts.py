"""RUN --mount, --network and --security: what a RUN step sees besides its
stage's layers, as BuildKit defines them. Nothing mounted here becomes part
of the layer: the mounts sit over the container's root, and what the step
leaves in its upper directory (empty mount points) is dropped.

    type=bind    files of the context (or of a stage or image: from=), read-only
                 unless rw; a copy, so writes are thrown away; its content is
                 part of the step's cache key
    type=cache   a directory kept in the store between builds (cache-mounts/),
                 per id (default: the target); sharing=shared|locked|private;
                 `minirun builder prune` empties them
    type=tmpfs   an empty tmpfs
    type=secret  a file given with `build --secret id=ID,src=FILE`, at
                 /run/secrets/ID (or target=), never in a layer, the history
                 or the cache key
    type=ssh     refused: minirun forwards no SSH agent

The parser here never mounts; prepare() lays out the host side and
returns it as -v/--tmpfs entries for the one start sequence.
"""
import fcntl
import hashlib
import os
import posixpath

from minirun.errors import DockerfileError
from minirun.linux.files import remove_tree
from minirun.record import Factory, Record

OPTIONS = {
    "bind": {"target", "source", "from", "rw", "ro"},
    "cache": {"target", "id", "sharing", "ro", "rw", "mode", "uid", "gid"},
    "tmpfs": {"target", "size"},
    "secret": {"target", "id", "required", "mode", "uid", "gid"},
}
ALIASES = {"dst": "target", "destination": "target", "src": "source", "readonly": "ro",
           "readwrite": "rw"}
FLAGS = {"ro", "rw", "required"}        # may stand alone: `ro` is ro=true


class RunMount(Record):
    type: str
    target: str
    options: dict = Factory(dict)

    def flag(self, name, default=False):
        value = self.options.get(name)
        if value is None:
            return default
        return value.lower() in ("", "true", "1")


def parse_mount(text, workdir="/"):
    """`type=cache,target=/root/.cache,sharing=locked` → a RunMount, or ValueError."""
    import csv                     # here: only a RUN --mount needs it
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise ValueError(f"--mount={text}: not a comma-separated list of key=value") from None
    options = {}
    for item in fields:
        key, eq, value = item.partition("=")
        key = ALIASES.get(key.strip().lower(), key.strip().lower())
        if not eq and key not in FLAGS:
            raise ValueError(f"--mount: {item!r} needs a value ({key}=...)")
        options[key] = value
    kind = options.pop("type", "bind")
    if kind == "ssh":
        raise ValueError("--mount=type=ssh: minirun forwards no SSH agent into builds")
    if kind not in OPTIONS:
        raise ValueError(f"--mount: unknown type {kind!r} (bind, cache, tmpfs or secret)")
    unknown = sorted(set(options) - OPTIONS[kind])
    if unknown:
        raise ValueError(f"--mount=type={kind}: unknown option {unknown[0]!r} "
                         f"(it takes {', '.join(sorted(OPTIONS[kind]))})")
    target = options.pop("target", None)
    if kind == "secret":
        if not options.get("id") and not target:
            raise ValueError("--mount=type=secret: give id= (or target=)")
        options.setdefault("id", posixpath.basename(target or ""))
        target = target or f"/run/secrets/{options['id']}"
    if not target:
        raise ValueError(f"--mount=type={kind}: target= is required")
    if kind == "cache" and options.get("sharing", "shared") not in ("shared", "private", "locked"):
        raise ValueError(f"--mount=type=cache: sharing={options['sharing']!r}: "
                         f"shared, private or locked")
    for key in ("mode", "uid", "gid"):
        if key in options and not options[key].isdigit():
            raise ValueError(f"--mount=type={kind}: {key}={options[key]!r} is not a number")
    return RunMount(kind, posixpath.normpath(posixpath.join(workdir, target)), options)


def parse_flags(ins, path, line, workdir, expand=lambda value: value):
    """A RUN's flags: ([RunMount], network or None). Unknown ones are refused.
    `expand`: the stage's word expansion, which --mount's value goes
    through first (target=$CACHE_DIR works, as in BuildKit)."""
    mounts, network = [], None
    for flag in ins.flags:
        name, eq, value = flag[2:].partition("=")
        if name == "mount":
            value = expand(value)
            try:
                mounts.append(parse_mount(value, workdir))
            except ValueError as e:
                raise DockerfileError(f"RUN {e}", path, line) from None
        elif name == "network":
            if value not in ("default", "none", "host"):
                raise DockerfileError(f"RUN --network={value}: default, none or host", path, line)
            network = value
        elif name == "security":
            if value == "insecure":
                raise DockerfileError("RUN --security=insecure: a step with every privilege is "
                                      "not something minirun's builder grants", path, line)
            if value != "sandbox":
                raise DockerfileError(f"RUN --security={value}: sandbox or insecure", path, line)
        else:
            raise DockerfileError(f"unknown flag: --{name} for RUN", path, line)
    return mounts, network


def bind_content(b, mount, ins, line):
    """What the cache key must know of a bind mount: its source's content."""
    return b.sources_content(mount.options.get("from"), [mount.options.get("source") or "."],
                             ins, line, what="RUN --mount")


class Prepared(Record):
    volumes: list = Factory(list)      # HOST:CTR[:ro] for RunOptions
    tmpfs: list = Factory(list)
    targets: list = Factory(list)      # mount points to drop from the layer
    scratch: list = Factory(list)      # host dirs to remove after the step
    locks: list = Factory(list)        # open lock files, held during the step

    def release(self):
        for f in self.locks:
            f.close()
        for d in self.scratch:
            remove_tree(d)


def prepare(b, stage, mounts, ins, line):
    """The host side of each mount, laid out; release() undoes it."""
    prepared = Prepared()
    try:
        for m in mounts:
            PREPARE[m.type](b, stage, m, ins, line, prepared)
            prepared.targets.append(m.target)
    except BaseException:
        prepared.release()
        raise
    return prepared


def _bind(b, stage, m, ins, line, prepared):
    from minirun.image import layerview
    from minirun.image.copying import copy_file, copy_tree, materialize
    staging = b.store.mkdtemp("mount-")
    prepared.scratch.append(staging)
    source = m.options.get("source", "")
    if "from" in m.options:
        lowers = b.layer_dirs(b._copy_from_config(m.options["from"], ins, line))
        rel = layerview.resolve(lowers, source or "/")        # inside that stage, never the host
        if not materialize(lowers, rel, staging):
            raise DockerfileError(f"RUN --mount from={m.options['from']}: {source}: no such file "
                                  f"or directory", b.path, line)
        host = os.path.join(staging, rel) if rel else staging
    else:
        rel = b.context.sources([source or "."], "RUN --mount", b.path, line)[0]
        src = os.path.join(b.context.root, rel) if rel else b.context.root
        host = os.path.join(staging, "source")
        if os.path.isdir(src):
            os.mkdir(host)
            copy_tree(b.context.root, rel, host, (0, 0), None, b.context.walk)
        else:
            copy_file(src, host, (0, 0), None)
    prepared.volumes.append(f"{host}:{m.target}" + ("" if m.flag("rw") else ":ro"))


def cache_dir(store_root, mount_id):
    return os.path.join(store_root, "cache-mounts", hashlib.sha256(mount_id.encode()).hexdigest())


def _cache(b, stage, m, ins, line, prepared):
    """A directory that outlives the build. sharing=locked: one step at a
    time (flock); private: a step that finds it in use gets a fresh one."""
    d = cache_dir(b.store.root, m.options.get("id") or m.target)
    os.makedirs(os.path.dirname(d), mode=0o700, exist_ok=True)
    if not os.path.isdir(d):
        os.mkdir(d, int(m.options.get("mode", "755"), 8))
        os.chown(d, int(m.options.get("uid", 0)), int(m.options.get("gid", 0)))
    sharing = m.options.get("sharing", "shared")
    if sharing != "shared":
        lock = open(d + ".lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if sharing == "private" else 0))
            prepared.locks.append(lock)
        except BlockingIOError:
            lock.close()
            d = b.store.mkdtemp("cache-mount-")
            prepared.scratch.append(d)
    prepared.volumes.append(f"{d}:{m.target}" + (":ro" if m.flag("ro") else ""))


def _tmpfs(b, stage, m, ins, line, prepared):
    size = m.options.get("size")
    prepared.tmpfs.append(f"{m.target}:mode=1777" + (f",size={size}" if size else ""))


def _secret(b, stage, m, ins, line, prepared):
    """The secret's bytes in a private file of the store's tmp/, bound
    read-only: the step reads it, its layer never holds it."""
    secret_id = m.options["id"]
    value = (b.opts.secrets or {}).get(secret_id)
    if value is None:
        if m.flag("required"):
            raise DockerfileError(f"RUN --mount=type=secret,id={secret_id}: no such secret "
                                  f"(give it with build --secret id={secret_id},src=FILE)",
                                  b.path, line)
        return                                  # not required: no mount, as BuildKit
    d = b.store.mkdtemp("secret-")
    os.chmod(d, 0o700)
    prepared.scratch.append(d)
    path = os.path.join(d, "secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as f:
        f.write(value)
    os.chown(path, int(m.options.get("uid", 0)), int(m.options.get("gid", 0)))
    os.chmod(path, int(m.options.get("mode", "400"), 8))
    prepared.volumes.append(f"{path}:{m.target}:ro")


PREPARE = {"bind": _bind, "cache": _cache, "tmpfs": _tmpfs, "secret": _secret}


def parse_secret_flag(text):
    """`build --secret id=ID,src=FILE` (or env=VAR) → (id, bytes)."""
    options = dict(item.partition("=")[::2] for item in text.split(","))
    secret_id = options.get("id")
    if not secret_id:
        raise ValueError(f"--secret {text}: give id=")
    if options.get("src") or options.get("source"):
        src = options.get("src") or options.get("source")
        try:
            with open(src, "rb") as f:
                return secret_id, f.read()
        except OSError as e:
            raise ValueError(f"--secret id={secret_id}: {src}: {e.strerror}") from None
    env = options.get("env", secret_id)
    if env not in os.environ:
        raise ValueError(f"--secret id={secret_id}: give src=FILE, or env=VAR set in the environment")
    return secret_id, os.environ[env].encode()


def prune(store_root):
    """`builder prune`: every cache mount goes; bytes freed."""
    from minirun.image.listing import tree_size
    d = os.path.join(store_root, "cache-mounts")
    freed = 0
    for entry in os.listdir(d) if os.path.isdir(d) else []:
        path = os.path.join(d, entry)
        if entry.endswith(".lock"):
            os.unlink(path)
            continue
        freed += tree_size(path)
        remove_tree(path)
    return freed
