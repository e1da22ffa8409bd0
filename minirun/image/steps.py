"""What each instruction does to a stage: one handler per keyword (HANDLERS).

A handler gets the builder, the stage, the Instruction and its expanded
arguments. Most only change the image config; RUN, COPY, ADD and sometimes
WORKDIR add a layer.
"""
import json
import os
import posixpath
import re
import stat

from minirun.errors import DockerfileError, ExecError, MinirunError
from minirun.image import layerview
from minirun.linux.files import remove_tree

DEFAULT_SHELL = ["/bin/sh", "-c"]
# Mount points the start sequence may create in a RUN step's upper dir;
# they are not the step's doing and stay out of its layer.
MOUNT_TARGETS = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys", "dev", "etc")


def _config(stage):
    return stage.config.setdefault("config", {})


# --- config-only instructions -------------------------------------------------------

def env(b, stage, ins, args, line):
    cfg = _config(stage)
    current = dict(e.split("=", 1) if "=" in e else (e, "") for e in cfg.get("Env") or [])
    for i in range(0, len(args), 3):
        current[args[i]] = args[i + 1]
    cfg["Env"] = [f"{k}={v}" for k, v in current.items()]


def label(b, stage, ins, args, line):
    labels = _config(stage).setdefault("Labels", {})
    for i in range(0, len(args), 3):
        labels[args[i]] = args[i + 1]


def maintainer(b, stage, ins, args, line):
    stage.config["author"] = args[0] if args else ""


def arg(b, stage, ins, args, line):
    pass     # BuildScope.expand has declared it


def _command(stage, ins, args):
    """Exec form as written; shell form through the stage's SHELL."""
    if ins.json_form:
        return list(args)
    return (_config(stage).get("Shell") or DEFAULT_SHELL) + [" ".join(args)]


def cmd(b, stage, ins, args, line):
    _config(stage)["Cmd"] = _command(stage, ins, args)


def entrypoint(b, stage, ins, args, line):
    cfg = _config(stage)
    cfg["Entrypoint"] = _command(stage, ins, args)
    if not stage.cmd_set:
        cfg["Cmd"] = None          # Docker: a new ENTRYPOINT drops the base image's CMD


def shell(b, stage, ins, args, line):
    if not ins.json_form:
        raise DockerfileError("SHELL requires the arguments to be in JSON form", b.path, line)
    _config(stage)["Shell"] = list(args)


def user(b, stage, ins, args, line):
    _config(stage)["User"] = args[0] if args else ""


def stopsignal(b, stage, ins, args, line):
    _config(stage)["StopSignal"] = args[0] if args else ""


def expose(b, stage, ins, args, line):
    ports = _config(stage).setdefault("ExposedPorts", {})
    for port in args:
        number, _, proto = port.partition("/")
        if not number.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
            raise DockerfileError(f"EXPOSE {port}: invalid port", b.path, line)
        ports[f"{number}/{proto or 'tcp'}"] = {}


def volume(b, stage, ins, args, line):
    volumes = _config(stage).setdefault("Volumes", {})
    for path in args:
        if not path:
            raise DockerfileError("VOLUME specified can not be an empty string", b.path, line)
        volumes[path] = {}


def onbuild(b, stage, ins, args, line):
    trigger = ins.onbuild
    if trigger is None or trigger.keyword in ("onbuild", "from", "maintainer"):
        raise DockerfileError("ONBUILD needs an instruction other than ONBUILD, FROM or "
                              "MAINTAINER", b.path, line)
    _config(stage).setdefault("OnBuild", []).append(trigger.original.strip())


DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _duration(text, b, line):
    if text.isdigit():
        return int(text)
    parts = DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise DockerfileError(f"HEALTHCHECK: invalid duration {text!r}", b.path, line)
    return int(sum(float(n) * UNITS[u] for n, u in parts))


def healthcheck(b, stage, ins, args, line):
    from minirun.image.dockerfile import instruction_flags
    flags = instruction_flags(ins, ("interval", "timeout", "start-period", "start-interval",
                                    "retries"), b.path, line)
    kind = (args[0] if args else "").upper()
    if kind == "NONE":
        _config(stage)["Healthcheck"] = {"Test": ["NONE"]}
        return
    if kind != "CMD" or len(args) < 2:
        raise DockerfileError("HEALTHCHECK takes CMD command, or NONE", b.path, line)
    test = ["CMD"] + args[1:] if ins.json_form else ["CMD-SHELL", " ".join(args[1:])]
    check = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag in flags:
            check[key] = _duration(flags[flag], b, line)
    if "retries" in flags:
        if not flags["retries"].isdigit():
            raise DockerfileError(f"HEALTHCHECK --retries={flags['retries']}: not a number",
                                  b.path, line)
        check["Retries"] = int(flags["retries"])
    _config(stage)["Healthcheck"] = check


# --- instructions that change the filesystem ---------------------------------------

def workdir(b, stage, ins, args, line):
    cfg = _config(stage)
    path = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", args[0]))
    cfg["WorkingDir"] = path
    if layerview.lookup(b.layer_dirs(stage.config), path) is None:   # Docker creates it
        from minirun.image import copying
        tree = b.store.mkdtemp("workdir-")
        try:
            copying.make_parents(tree, path, b.layer_dirs(stage.config), include_last=True)
            b.commit_layer(stage, tree)
        finally:
            remove_tree(tree)


def run(b, stage, ins, args, line):
    """A container from the stage's layers: its upper dir becomes a layer."""
    from minirun.image import runmounts
    mounts, network = runmounts.parse_flags(ins, b.path, line, _config(stage).get("WorkingDir") or "/",
                                            b.scope.expand_value(ins, line))
    b.needs_emulation(stage, line)
    if ins.json_form:
        command = list(args)
    else:
        script = args[0] if args else ""
        if ins.heredocs:
            marker = r"<<-?(['\"]?)" + re.escape(ins.heredocs[0].name) + r"\1"
            if re.fullmatch(marker, script.strip()):
                script = ins.heredocs[0].content          # RUN <<EOF: the body is the script
            else:
                script += "\n" + "".join(f"{h.content}{h.name}\n" for h in ins.heredocs)
        command = (_config(stage).get("Shell") or DEFAULT_SHELL) + [script]
    prepared = runmounts.prepare(b, stage, mounts, ins, line)
    try:
        code, upper, bundle = run_container(b, stage, command, line, prepared, network)
    finally:
        prepared.release()
    try:
        if code != 0:
            raise DockerfileError(f"RUN: the command {json.dumps(command)} returned a non-zero "
                                  f"code: {code}", b.path, line)
        drop_mount_points(upper, b.layer_dirs(stage.config), prepared.targets)
        b.commit_layer(stage, upper)
    finally:
        remove_tree(bundle)


def run_container(b, stage, command, line, mounts=None, network=None):
    """Start a build container with the one start sequence; its exit code,
    its upper dir and its bundle (to be removed by the caller). `mounts`:
    RUN --mount's host side (runmounts.Prepared); `network`: RUN --network."""
    import signal
    from minirun.image.store import Image
    from minirun.runtime import container
    from minirun.runtime.options import RunOptions, build_spec
    from minirun.runtime.start import (
        attached_stdio, close_all, finish, hold_signals, launch, release_signals, supervise)
    cfg = _config(stage)
    diff_ids = stage.config["rootfs"]["diff_ids"]
    image = Image("", stage.config, b.layer_dirs(stage.config),
                  [b.store.layer_link(d) for d in diff_ids])
    env_names = {e.split("=", 1)[0] for e in cfg.get("Env") or []}
    build_args = [f"{k}={v}" for k, v in (b.scope.stage_args or {}).items() if k not in env_names]
    if not diff_ids:
        raise DockerfileError("RUN in an empty image (FROM scratch): there is no shell to run",
                              b.path, line)
    bundle = b.store.mkdtemp("build-")
    cid = container.new_id()
    spec = None
    b.say(f" ---> Running in {cid[:12]}")
    try:
        for d in ("upper", "work", "rootfs"):
            os.mkdir(os.path.join(bundle, d))
        opts = RunOptions(command=command, entrypoint="", env=build_args, hostname=cid[:12],
                          network=b.opts.network if network in (None, "default") else network,
                          volumes=list(mounts.volumes) if mounts else [],
                          tmpfs=list(mounts.tmpfs) if mounts else [])
        spec = build_spec(opts, image, cid, bundle, b.store.root)
        write_run_network_files(b.store, spec)
        container.give_to_container_root(spec)
        container.write_spec(spec)     # so a sweep after a SIGKILL can give its lease back
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        theirs, ours = attached_stdio(spec.process)
        hold_signals()
        try:
            running = launch(spec, None, theirs)
        except ExecError as e:
            release_signals()
            close_all(ours)
            raise DockerfileError(f"RUN: {e}", b.path, line) from None
        except BaseException:
            release_signals()
            close_all(ours)
            raise
        finally:
            close_all(theirs)
        running.pipes = ours
        try:
            code = supervise(running)
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        finish(spec, None)
        upper = os.path.join(bundle, "upper")
        if spec.userns is not None:
            # What the remapped root made is owned by its uid outside: back
            # to the image's own ids before it becomes a layer.
            from minirun.image.layers import shift_owners
            (_, uid, count), (_, gid, _) = spec.userns.uid_map[0], spec.userns.gid_map[0]
            shift_owners(upper, -uid, -gid, below=(uid, gid, count))
        return code, upper, bundle
    except BaseException:
        remove_tree(bundle)
        raise
    finally:
        if spec is not None and spec.attachment is not None:
            from minirun.network.connect import disconnect
            disconnect(b.store.root, spec.id, spec.attachment)


def write_run_network_files(store, spec):
    """A RUN step's network, as `docker build` gives it: its own namespace
    on the default bridge (leased here, given back when the step ends), or
    the host's, or none; and the /etc files that go with it."""
    from minirun.runtime import etcfiles
    if spec.network == "host":
        etcfiles.write_etc_files(spec.bundle, spec.hostname, etcfiles.host_hosts_lines(),
                                 keep_loopback_dns=True)
        return
    lines = []
    if spec.network == "bridge":
        from minirun.network.connect import connect
        with store.lock():
            connect(store.root, spec, [], [])
        lines = [f"{spec.attachment.address}\t{spec.hostname}"]
    etcfiles.write_etc_files(spec.bundle, spec.hostname, lines)


def drop_mount_points(upper, lowers, targets=()):
    """Remove what the start sequence made as mount points (an empty
    /etc/hosts..., RUN --mount's targets and the directories made for
    them) where the image had nothing."""
    extra = []
    for target in targets:
        rel = target.strip("/")
        while rel:
            extra.append(rel)
            rel = posixpath.dirname(rel)
    for rel in [*MOUNT_TARGETS[:-1], *extra, MOUNT_TARGETS[-1]]:
        path = os.path.join(upper, rel)
        if not os.path.lexists(path) or layerview.lookup(lowers, "/" + rel) is not None:
            continue
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(path)            # only when empty
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(path)
        except OSError:
            pass


def copy(b, stage, ins, args, line):
    _copy_or_add(b, stage, ins, args, line, extract_archives=False)


def add(b, stage, ins, args, line):
    _copy_or_add(b, stage, ins, args, line, extract_archives=True)


COPY_FLAGS = ("from", "chown", "chmod", "link", "parents", "exclude")
ADD_FLAGS = ("chown", "chmod", "link", "checksum", "exclude", "keep-git-dir")


def copy_flags(ins, path, line):
    """COPY's or ADD's flags; --exclude may repeat. --link is accepted: a
    minirun layer never depends on the layers below it anyway."""
    from minirun.image.dockerfile import instruction_flags
    allowed = COPY_FLAGS if ins.keyword == "copy" else ADD_FLAGS
    flags = instruction_flags(ins, allowed, path, line, repeatable=("exclude",))
    if "checksum" in flags and not re.fullmatch(r"sha256:[0-9a-f]{64}", flags["checksum"]):
        raise DockerfileError(f"ADD --checksum={flags['checksum']}: sha256: and 64 hex digits",
                              path, line)
    if "keep-git-dir" in flags:
        raise DockerfileError("ADD --keep-git-dir: minirun does not add git repositories", path, line)
    return flags


GIT_URL = re.compile(r"^(git@|git://|ssh://)|\.git(#.*)?$|^https?://[^/]+/.*\.git(/|#|$)")


def is_remote(source, ins, path, line):
    """Whether an ADD source is a URL to fetch; a git repository or any
    other scheme, or a URL given to COPY, is refused."""
    if not re.match(r"^[a-z][a-z0-9+.-]*://", source) and not source.startswith("git@"):
        return False
    if ins.keyword == "copy":
        raise DockerfileError(f"COPY {source}: COPY takes files of the context, not URLs "
                              f"(ADD fetches HTTP(S) URLs)", path, line)
    if GIT_URL.search(source):
        raise DockerfileError(f"ADD {source}: adding a git repository is not supported: clone "
                              f"it into the build context and COPY it", path, line)
    if not source.startswith(("http://", "https://")):
        raise DockerfileError(f"ADD {source}: only http:// and https:// URLs can be fetched",
                              path, line)
    return True


class Download:
    def __init__(self, path, name, digest, mtime):
        self.path, self.name, self.digest, self.mtime = path, name, digest, mtime


def download_url(url, checksum, directory, path, line):
    """Fetch `url` into `directory` for ADD, with the HTTP client the
    registries use; the file's name is the URL's last path component, its
    mtime the Last-Modified header's. A --checksum mismatch keeps nothing."""
    import email.utils
    import hashlib
    import tempfile
    import requests
    from minirun.image.registry import system_ca
    name = posixpath.basename(url.split("?", 1)[0].split("#", 1)[0].rstrip("/")) or "index.html"
    try:
        r = requests.get(url, stream=True, timeout=(30, 300), verify=system_ca())
    except requests.RequestException as e:
        from minirun.image.registry import _reason
        raise DockerfileError(f"ADD {url}: {_reason(e)}", path, line) from None
    with r:
        if r.status_code != 200:
            raise DockerfileError(f"ADD {url}: the server answered {r.status_code} {r.reason}",
                                  path, line)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=directory)
        with open(fd, "wb") as f:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
                h.update(chunk)
        modified = r.headers.get("Last-Modified")
    digest = "sha256:" + h.hexdigest()
    if checksum and digest != checksum:
        os.unlink(tmp)
        raise DockerfileError(f"ADD {url}: checksum mismatch: the file is {digest}, "
                              f"--checksum says {checksum}", path, line)
    mtime = None
    if modified:
        try:
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            pass
    return Download(tmp, name, digest, mtime)


class Excluded:
    """COPY/ADD --exclude=PATTERN: .dockerignore's pattern syntax, matched
    against each path under a source, relative to that source."""

    def __init__(self, patterns):
        from minirun.image.context import Ignore
        self.ignore = Ignore(patterns) if patterns else None

    def __call__(self, rel, top=""):
        if self.ignore is None:
            return False
        sub = posixpath.relpath(rel, top) if top else rel
        return sub != "." and self.ignore.excluded(sub)

    def walk(self, walk):
        """A walk without what is excluded (a pattern that matches a
        directory excludes what is below it: Ignore.excluded)."""
        if self.ignore is None:
            return walk
        return lambda top="": [p for p in walk(top) if not self(p, top)]


def context_sources(b, sources, excluded, what, line):
    """COPY/ADD's sources in the build context, globs expanded and
    --exclude applied: {context-relative path: the path --parents keeps
    under the destination} (after a `/./` in the source, or all of it)."""
    kept = {}
    for s in sources:
        pivot = posixpath.normpath(s.split("/./", 1)[0]) if "/./" in s else ""
        for rel in b.context.sources([s], what, b.path, line):
            if not excluded(rel):
                kept[rel] = posixpath.relpath(rel, pivot) if pivot not in ("", ".") else rel
    return kept


def _copy_or_add(b, stage, ins, args, line, extract_archives):
    from minirun.image import copying                 # the file work: shutil, tarfile
    from minirun.image.dockerfile import flag_is_set
    from minirun.image.layers import unpack_tar
    from minirun.runtime.users import resolve_user
    what = ins.keyword.upper()
    if len(args) < 2:
        raise DockerfileError(f"{what} requires at least two arguments: SOURCE... DEST",
                              b.path, line)
    flags = copy_flags(ins, b.path, line)
    parents = flag_is_set(flags, "parents")
    if parents and "from" in flags:
        raise DockerfileError("COPY --parents with --from: minirun keeps parents only for "
                              "sources of the build context", b.path, line)
    excluded = Excluded(flags["exclude"])
    lowers = b.layer_dirs(stage.config)
    cfg = _config(stage)
    sources, dest = args[:-1], args[-1]
    dest_abs = posixpath.normpath(posixpath.join(cfg.get("WorkingDir") or "/", dest))
    owner = (0, 0)
    if flags.get("chown"):
        try:
            u = resolve_user(flags["chown"], lowers)
        except MinirunError as e:
            raise DockerfileError(f"{what} --chown={flags['chown']}: {e}", b.path, line) from None
        owner = (u.uid, u.gid)
    mode = None
    if flags.get("chmod"):
        if not re.fullmatch(r"[0-7]{3,4}", flags["chmod"]):
            raise DockerfileError(f"{what} --chmod={flags['chmod']}: an octal mode, e.g. 0755",
                                  b.path, line)
        mode = int(flags["chmod"], 8)
    heredocs = {h.name: h for h in ins.heredocs}
    urls = [s for s in sources if s.lstrip("<") not in heredocs
            and is_remote(s, ins, b.path, line)]
    if "checksum" in flags and len(urls) != len(sources):
        raise DockerfileError("ADD --checksum works only with an http(s) URL source", b.path, line)
    is_glob = any(set(s) & set("*?[") for s in sources if s not in urls)
    below = layerview.lookup(lowers, dest_abs)
    dest_is_dir = dest.endswith("/") or len(sources) > 1 or is_glob or parents or (
        below is not None and stat.S_ISDIR(below.st_mode))
    tree = b.store.mkdtemp("copy-")
    staging = None
    later = {}                   # files whose bytes the layer's hashing copies
    try:
        if "from" in flags:
            staging = b.store.mkdtemp("from-")
            source_root = staging
            source_lowers = b.layer_dirs(b._copy_from_config(flags["from"], ins, line))
            rels = []
            for s in sources:
                rel = layerview.resolve(source_lowers, s)    # inside that stage, never the host
                if not copying.materialize(source_lowers, rel, staging):
                    raise DockerfileError(f"{what} --from={flags['from']}: {s}: no such file or "
                                          f"directory", b.path, line)
                rels.append(rel)
            walk = excluded.walk(lambda top: copying.walk(os.path.join(staging, top), top))
        else:
            source_root = b.context.root
            kept = context_sources(b, [s for s in sources if s.lstrip("<") not in heredocs
                                       and s not in urls], excluded, what, line)
            rels = list(kept)
            walk = excluded.walk(b.context.walk)
        target_dir = copying.make_parents(tree, dest_abs, lowers, include_last=dest_is_dir)
        for s in sources:
            if s.startswith("<<") and s[2:] in heredocs:
                path = os.path.join(target_dir, s[2:]) if dest_is_dir else tree + dest_abs
                with open(path, "w") as f:
                    f.write(heredocs[s[2:]].content)
                copying.own(path, owner, 0o644 if mode is None else mode)
        for url in urls:
            got = b.download(url, flags.get("checksum"), line)
            target = os.path.join(target_dir, got.name) if dest_is_dir else tree + dest_abs
            copying.copy_file(got.path, target, owner, 0o600 if mode is None else mode, later=later)
            if got.mtime is not None:
                os.utime(target, (got.mtime, got.mtime))
        for rel in rels:
            src = os.path.join(source_root, rel) if rel else source_root
            if parents and rel:
                place = posixpath.join(dest_abs, kept[rel])
                target_dir = copying.make_parents(tree, place, lowers,
                                                  include_last=os.path.isdir(src))
                if not os.path.isdir(src):
                    copying.copy_file(src, tree + place, owner, mode, later=later)
                    continue
                copying.copy_tree(source_root, rel, target_dir, owner, mode, walk, later)
            elif os.path.isdir(src):
                copying.copy_tree(source_root, rel, target_dir if dest_is_dir else
                                  copying.make_parents(tree, dest_abs, lowers, include_last=True),
                                  owner, mode, walk, later)
            elif extract_archives and copying.is_archive(src):
                copying.fill_now(later)         # the archive may replace some of them
                os.makedirs(tree + dest_abs, exist_ok=True)
                with open(src, "rb") as f:
                    unpack_tar(f, tree + dest_abs, layer=False)
            else:
                target = os.path.join(target_dir, os.path.basename(rel)) if dest_is_dir \
                    else tree + dest_abs
                copying.copy_file(src, target, owner, mode, later=later)
        fed = b.context.checksums.hash_along(later.values(), b.context.root) \
            if source_root == b.context.root else []
        b.commit_layer(stage, tree, later)
        b.context.checksums.learn_along(fed)
    finally:
        remove_tree(tree)
        if staging:
            remove_tree(staging)


HANDLERS = {
    "env": env, "label": label, "maintainer": maintainer, "arg": arg, "cmd": cmd,
    "entrypoint": entrypoint, "shell": shell, "user": user, "stopsignal": stopsignal,
    "expose": expose, "volume": volume, "onbuild": onbuild, "healthcheck": healthcheck,
    "workdir": workdir, "run": run, "copy": copy, "add": add,
}
