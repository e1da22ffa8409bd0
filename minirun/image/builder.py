"""Door 2: the builder. Parsed instructions → layers and an image config.

The parser (dockerfile.py) has already turned text into Instruction records
and expand.py expands their words; the builder only acts on them, one
handler per instruction kind (HANDLERS). A RUN step is a container started
by the one start sequence (runtime/start.py); its overlay upper dir becomes
the new layer. COPY and ADD write a layer directly from the context.

Every step first asks the build cache, keyed by the state it starts from
(the parent's config and layers), the instruction after expansion, the build
args it can see, and for COPY/ADD the content of what it copies.
"""
import errno
import hashlib
import json
import os
import re
import sys
import time

from minirun.errors import DockerfileError, MinirunError
from minirun.image import steps
from minirun.image.context import Context
from minirun.image.dockerfile import instruction_flags, parse_file, parse_instruction
from minirun.image.expand import BuildScope
from minirun.image.store import canonical_json, check_config
from minirun.linux.files import write_atomic
from minirun.record import Factory, Record


class BuildOptions(Record):
    context: str
    dockerfile: str | None = None
    tags: list[str] = Factory(list)
    build_args: dict[str, str] = Factory(dict)
    target: str | None = None
    no_cache: bool = False
    quiet: bool = False
    network: str = "bridge"    # where RUN steps run: bridge (as docker build), host or none
    pull: str = "missing"      # FROM images: pulled when missing, always, or never
    platform: str | None = None   # the target platform (build --platform); None: this machine's
    secrets: dict = Factory(dict)   # build --secret: id → bytes, for RUN --mount


class Stage(Record):
    index: int
    name: str | None
    config: dict               # the OCI image config this stage is building
    cmd_set: bool = False      # CMD given in this stage (ENTRYPOINT keeps it then)
    platform: tuple = ()       # (os, architecture, variant) it builds for


def new_config():
    from minirun.image.distribution import parse_platform
    return {"architecture": parse_platform(None)[1], "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": []}, "history": []}


def platform_args(build, target):
    """BuildKit's predefined platform ARGs: global, and visible in a stage
    once it declares them (ARG TARGETARCH)."""
    from minirun.image.distribution import platform_text
    out = {}
    for prefix, p in (("BUILD", build), ("TARGET", target)):
        out.update({f"{prefix}PLATFORM": platform_text(p), f"{prefix}OS": p[0],
                    f"{prefix}ARCH": p[1], f"{prefix}VARIANT": p[2] or ""})
    return out


def now_iso(epoch=None):
    t = time.gmtime(epoch if epoch is not None else time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", t)


class Builder:
    def __init__(self, store, opts: BuildOptions, out=sys.stdout):
        self.store = store
        self.opts = opts
        self.new_images = []          # intermediate images first made by this build
        self.out = out
        self.path = opts.dockerfile or os.path.join(opts.context, "Dockerfile")
        if not os.path.isdir(opts.context):
            raise MinirunError(f"unable to prepare context: {opts.context} is not a directory")
        self.context = Context(opts.context, store.root)
        self.stages: list[Stage] = []
        self.downloads = {}           # ADD URL → steps.Download, for this build
        self.downloads_dir = None     # where they are, in tmp/ (made on the first)
        self.epoch = self._source_date_epoch()
        from minirun.image.distribution import parse_platform
        self.build_platform = parse_platform(None)
        self.target_platform = parse_platform(opts.platform) if opts.platform else self.build_platform

    def _source_date_epoch(self):
        value = self.opts.build_args.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH")
        if value is None:
            return None
        if not value.isdigit():
            raise MinirunError(f"SOURCE_DATE_EPOCH={value}: not a number of seconds")
        return int(value)

    def say(self, text):
        if not self.opts.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    # --- the build ---------------------------------------------------------------

    def build(self):
        """Run every stage up to the target; tag and return the image id."""
        from minirun.runtime.container import sweep_dead_work
        sweep_dead_work(self.store)
        try:
            return self._build()
        finally:
            if self.downloads_dir is not None:
                import shutil
                shutil.rmtree(self.downloads_dir, ignore_errors=True)

    def _build(self):
        from minirun.image import lint
        dockerfile = parse_file(self.path)
        self.notice_syntax(dockerfile.directives.get("syntax"))
        self.checks = lint.Checks.from_directive(dockerfile.directives.get("check"), self.path)
        lint.static_checks(self.checks, dockerfile.instructions)
        self.scope = BuildScope(self.opts.build_args, dockerfile.escape, self.path,
                                platform_args(self.build_platform, self.target_platform))
        instructions = self._up_to_target(dockerfile.instructions)
        stage = None
        for number, ins in enumerate(instructions, 1):
            self.say(f"Step {number}/{len(instructions)} : {ins.original.strip()}")
            if ins.keyword == "from":
                stage = self._from(ins)
                continue
            if stage is None:
                if ins.keyword == "arg":
                    self.scope.expand(ins)
                    self.note_undefined(ins)
                    continue
                raise DockerfileError("no build stage in current context: the first "
                                      "instruction must be FROM (or ARG)", self.path, ins.start_line)
            self.step(stage, ins)
        if stage is None:
            raise DockerfileError("no FROM instruction", self.path)
        for line in self.checks.lines():
            sys.stderr.write(line + "\n")
        if self.checks.found and self.checks.error:
            raise DockerfileError(f"{len(self.checks.found)} check(s) failed, and "
                                  f"# check=error=true makes that an error", self.path)
        image_id = self._image_of(stage)
        self.say(f"Successfully built {image_id.split(':')[1][:12]}")
        for tag in self.opts.tags:
            self.store.tag(tag, image_id)
            self.say(f"Successfully tagged {tag if ':' in tag.rsplit('/', 1)[-1] else tag + ':latest'}")
        return image_id

    def _up_to_target(self, instructions):
        if self.opts.target is None:
            return instructions
        for i, ins in enumerate(instructions):
            if ins.keyword == "from" and len(ins.args) == 3 and ins.args[2] == self.opts.target:
                end = next((j for j in range(i + 1, len(instructions))
                            if instructions[j].keyword == "from"), len(instructions))
                return instructions[:end]
        raise MinirunError(f"target stage {self.opts.target!r} could not be found")

    def _from(self, ins):
        platform = self._stage_platform(ins)
        args = self.scope.expand(ins)
        self.note_undefined(ins)
        if len(args) not in (1, 3) or len(args) == 3 and args[1].lower() != "as":
            raise DockerfileError("FROM takes IMAGE [AS NAME]", self.path, ins.start_line)
        name = args[2] if len(args) == 3 else None
        base = args[0]
        from_stage = self._stage(base) is not None
        config = self._base_config(base, ins, platform)
        # A base image's ONBUILD triggers run here, once; the new image does not inherit them.
        triggers = config["config"].pop("OnBuild", None) or []
        stage = Stage(len(self.stages), name, config, platform=platform)
        self.stages.append(stage)
        self.scope.start_stage(config["config"].get("Env") or [])
        self.say(f" ---> {self._short(config)}")
        for trigger in ([] if from_stage else triggers):
            self.say(f"# Executing ONBUILD trigger: {trigger}")
            self.step(stage, parse_instruction(trigger, "\\", ins.start_line, self.path),
                      onbuild_line=ins.start_line)
        return stage

    def notice_syntax(self, syntax):
        """`# syntax=IMAGE` names a frontend to run; minirun reads Dockerfiles
        itself. The stable docker/dockerfile frontend is the language it
        reads, so that one passes silently; any other gets a notice."""
        if syntax is None:
            return
        name = syntax.split("@")[0].removeprefix("docker.io/")
        repo, _, tag = name.partition(":")
        if repo == "docker/dockerfile" and re.fullmatch(r"1(\.\d+)*|latest|", tag):
            return
        sys.stderr.write(f"minirun: notice: # syntax={syntax}: minirun does not run frontend "
                         f"images; building with its own Dockerfile reader\n")

    def note_undefined(self, ins, line=None):
        for name in self.scope.undefined(ins):
            if ins.keyword == "from":
                self.checks.warn("UndefinedArgInFrom", f"FROM argument '{name}' is not declared",
                                 ins.start_line)
            else:
                self.checks.warn("UndefinedVar", f"Usage of undefined variable '${name}'",
                                 line or ins.start_line)

    def _stage_platform(self, ins):
        """FROM --platform=P (expanded with the platform ARGs), else the target's."""
        from minirun.image.distribution import parse_platform
        value = instruction_flags(ins, ("platform",), self.path).get("platform")
        if value is None:
            return self.target_platform
        try:
            return parse_platform(self.scope.expand_word(value, ins))
        except MinirunError as e:
            raise DockerfileError(f"FROM --platform={value}: {e}", self.path, ins.start_line) from None

    def needs_emulation(self, stage, line):
        """RUN runs the stage's programs on this machine's CPU: a stage for
        another architecture would need an emulator (binfmt_misc + QEMU),
        which minirun does not set up."""
        if stage.platform[:2] != self.build_platform[:2]:
            from minirun.image.distribution import platform_text
            raise DockerfileError(f"RUN in a {platform_text(stage.platform)} stage would need "
                                  f"emulation on this {platform_text(self.build_platform)} "
                                  f"machine, which minirun does not do", self.path, line)

    def _base_config(self, base, ins, platform=None):
        if base == "scratch":
            config = new_config()
            if platform:
                config["os"], config["architecture"] = platform[:2]
                if platform[2]:
                    config["variant"] = platform[2]
            return config
        previous = self._stage(base)
        if previous is not None:
            return json.loads(json.dumps(previous.config))
        config = json.loads(json.dumps(self._image(base, ins, platform).config))
        got = (config.get("os", "linux"), config.get("architecture"))
        if platform and got != platform[:2]:
            from minirun.image.distribution import platform_text
            raise DockerfileError(f"FROM {base}: the image in the store is for "
                                  f"{platform_text(got)}, not {platform_text(platform)} "
                                  f"(minirun pull --platform {platform_text(platform)} {base})",
                                  self.path, ins.start_line)
        return config

    def _stage(self, ref):
        for stage in self.stages:
            if stage.name == ref or str(stage.index) == ref:
                return stage
        return None

    def _image(self, ref, ins, platform=None):
        from minirun.image.distribution import obtain, platform_text
        line = ins.start_line if ins else None
        try:
            return obtain(self.store, ref, self.opts.pull, quiet=self.opts.quiet,
                          platform=platform_text(platform) if platform else None)
        except MinirunError as e:         # not found, a bad reference, the registry's refusal
            raise DockerfileError(str(e), self.path, line) from None

    def _short(self, config):
        return hashlib.sha256(canonical_json(config)).hexdigest()[:12]

    # --- one step, through the cache ----------------------------------------------

    def step(self, stage, ins, onbuild_line=None):
        line = onbuild_line or ins.start_line
        handler = HANDLERS.get(ins.keyword)
        if handler is None:
            raise DockerfileError(f"unknown instruction: {ins.keyword.upper()}", self.path, line)
        args = self.scope.expand(ins)
        self.note_undefined(ins, line)
        if ins.keyword == "arg":
            handler(self, stage, ins, args, line)     # scope only: nothing to cache
            self.say(f" ---> {self._image_of(stage)[7:19]}")
            return
        state = {"config": stage.config["config"], "layers": stage.config["rootfs"]["diff_ids"]}
        # With --no-cache nothing is looked up, and a COPY's key can wait for
        # the copy: its one pass over the files hashes them for the key too.
        content_after = self.opts.no_cache and ins.keyword in COPY_LIKE
        if content_after:
            state = json.loads(canonical_json(state))   # a copy: the step changes the stage
        key = None if content_after else self._cache_key(state, ins, args,
                                                         self._content(stage, ins, args, line))
        cached = None if self.opts.no_cache else self._cache_get(key)
        if cached is not None:
            stage.config = cached
            self.say(" ---> Using cache")
        else:
            before = len(stage.config["rootfs"]["diff_ids"])
            try:
                handler(self, stage, ins, args, line)
                stage.config.setdefault("history", []).append(self._history(ins, args, stage, before))
                if content_after:
                    key = self._cache_key(state, ins, args, self._content(stage, ins, args, line))
                self._cache_put(key, stage.config)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                path = e.filename2 or e.filename     # shutil names the destination second
                where = f"writing {path}" if path else "writing a layer"
                raise DockerfileError(f"{ins.keyword.upper()}: no space left on device {where} "
                                      f"(the store is {self.store.root}: free space there)",
                                      self.path, line) from None
        if ins.keyword == "cmd":
            stage.cmd_set = True      # cached or not: a later ENTRYPOINT keeps this CMD
        self.say(f" ---> {self._image_of(stage)[7:19]}")

    def _image_of(self, stage):
        """The stage as it stands, stored as an image: the classic builder's
        intermediate images, whose ids `inspect` and `run` take (`image
        prune` removes them once unnamed). Its time is the last step's, so
        the last step's id is the built image's, and a build served wholly
        from the cache gives the same id again."""
        history = stage.config.get("history") or [{}]
        config = dict(stage.config, created=history[-1].get("created") or now_iso(self.epoch))
        return self.store.add_image(config, made=self.new_images)

    def _history(self, ins, args, stage, layers_before):
        entry = {"created": now_iso(self.epoch), "created_by": self._created_by(ins, args)}
        if len(stage.config["rootfs"]["diff_ids"]) == layers_before:
            entry["empty_layer"] = True
        return entry

    @staticmethod
    def _created_by(ins, args):
        if ins.keyword == "run":
            return ("RUN " + json.dumps(args)) if ins.json_form else "/bin/sh -c " + " ".join(args)
        if ins.keyword in ("env", "label"):
            args = [f"{args[i]}={args[i + 1]}" for i in range(0, len(args), 3)]
        return f"/bin/sh -c #(nop) {ins.keyword.upper()} {' '.join(args)}"

    def _content(self, stage, ins, args, line):
        """What a step takes from outside its stage, for its cache key."""
        return (self._copy_content(stage, ins, args, line) if ins.keyword in COPY_LIKE else
                self._run_content(stage, ins, line) if ins.keyword == "run" else False)

    def _cache_key(self, state, ins, args, content):
        """`state`: the stage's config and layers before the step."""
        visible_args = sorted(self.scope.stage_args.items()) if self.scope.stage_args else []
        material = [state, ins.keyword, ins.flags, args, [h.content for h in ins.heredocs],
                    visible_args if ins.keyword == "run" else [], content or ""]
        return hashlib.sha256(canonical_json(material)).hexdigest()

    def _cache_dir(self):
        return os.path.join(self.store.root, "cache")

    def _cache_get(self, key):
        try:
            with open(os.path.join(self._cache_dir(), key + ".json")) as f:
                config = json.load(f)
            check_config(config)
            if all(os.path.isdir(self.store.layer_dir(d)) for d in config["rootfs"]["diff_ids"]):
                return config
        except (FileNotFoundError, ValueError):
            pass                      # a damaged entry is a miss; repair removes it
        return None

    def _cache_put(self, key, config):
        os.makedirs(self._cache_dir(), exist_ok=True)
        write_atomic(os.path.join(self._cache_dir(), key + ".json"), json.dumps(config))

    def commit_layer(self, stage, tree, pending=None):
        """The finished tree becomes a content-addressed layer of the stage
        (`pending`: files whose bytes are copied in while it is hashed)."""
        from minirun.image import layers     # tarfile: not for a build served from the cache
        if self.epoch is not None:
            layers.clamp_mtimes(tree, self.epoch)
        digest = layers.diff_id(tree, pending)
        with self.store.lock():
            self.store.add_layer(tree, digest)
        stage.config["rootfs"]["diff_ids"].append(digest)
        self.store.layer_link(digest)

    def layer_dirs(self, config):
        return [self.store.layer_dir(d) for d in config["rootfs"]["diff_ids"]]

    # --- COPY and ADD -------------------------------------------------------------

    def _copy_content(self, stage, ins, args, line):
        """What the cache must know of COPY/ADD's sources: their content
        (a URL's too: it is fetched, and checked against --checksum)."""
        flags = steps.copy_flags(ins, self.path, line)
        sources = args[:-1]
        if "from" in flags:
            return self.sources_content(flags["from"], sources, ins, line)
        heredoc_names = {h.name for h in ins.heredocs}
        plain = [s for s in sources if s.lstrip("<") not in heredoc_names]
        urls = [s for s in plain if steps.is_remote(s, ins, self.path, line)]
        digests = [self.download(url, flags.get("checksum"), line).digest for url in urls]
        return self.sources_content(None, [s for s in plain if s not in urls], ins, line,
                                    steps.Excluded(flags["exclude"])) + "".join(digests)

    def sources_content(self, stage_ref, sources, ins, line, excluded=None, what=None):
        """What the cache must know of files a step takes (COPY, ADD, RUN
        --mount=type=bind): from another stage or image (`stage_ref`), its
        layers and the paths; from the context, their content."""
        if stage_ref is not None:
            source_config = self._copy_from_config(stage_ref, ins, line)
            return "from:" + hashlib.sha256(canonical_json(
                source_config["rootfs"]["diff_ids"])).hexdigest() + json.dumps(sources)
        excluded = excluded or steps.Excluded(())
        rels = steps.context_sources(self, sources, excluded, what or ins.keyword.upper(), line)
        return self.context.content_digest(list(rels), excluded.walk(self.context.walk))

    def download(self, url, checksum, line):
        """ADD URL: fetched once per build into tmp/, checked against
        --checksum=sha256:<hex> when given (steps.download_url)."""
        if url not in self.downloads:
            if self.downloads_dir is None:
                self.downloads_dir = self.store.mkdtemp("add-url-")
            self.downloads[url] = steps.download_url(url, checksum, self.downloads_dir,
                                                     self.path, line)
        return self.downloads[url]

    def _run_content(self, stage, ins, line):
        """What the cache must know of RUN --mount=type=bind: its sources'
        content (a cache mount's or a secret's never counts)."""
        from minirun.image import runmounts
        mounts, _ = runmounts.parse_flags(ins, self.path, line,
                                          stage.config.get("config", {}).get("WorkingDir") or "/",
                                          self.scope.expand_value(ins, line))
        binds = [runmounts.bind_content(self, m, ins, line) for m in mounts if m.type == "bind"]
        return ",".join(binds) if binds else False

    def _copy_from_config(self, ref, ins, line):
        stage = self._stage(ref)
        if stage is not None:
            return stage.config
        return self._image(ref, ins).config


HANDLERS = steps.HANDLERS
COPY_LIKE = ("copy", "add")


def build(store, opts):
    """Build and return the image id. A failure leaves no image, no layer
    and no mount behind: layers are renamed into the store only when whole,
    and the intermediate images this build made go with it."""
    builder = Builder(store, opts)
    try:
        return builder.build()
    except BaseException:
        for image_id in builder.new_images:
            try:
                os.unlink(os.path.join(store.images, image_id.split(":", 1)[1] + ".json"))
            except FileNotFoundError:
                pass
        raise
