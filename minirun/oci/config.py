"""An OCI bundle's config.json → a ContainerSpec: the third door.

The runtime spec (github.com/opencontainers/runtime-spec, config.md and
config-linux.md) describes a container as JSON; minirun's ContainerSpec
says the same things in its own words. This module only translates and
checks: it never touches the kernel, the bundle's files, or minirun's
image store. What the spec defines and minirun's core cannot do is
refused here, naming the field by its JSON path:

    config.json: linux.resources.memory.limit: want an integer, got "1g"
"""
import json
import os
import re

from minirun.errors import MinirunError
from minirun.runtime.spec import (
    DEFAULT_DEVICE_RULES, Capabilities, ContainerSpec, Device, DeviceRule, Hook, Hooks, Mount,
    Process, Resources, Rlimit, Rootfs, User, UserNamespace)

SUPPORTED_VERSIONS = re.compile(r"1\.[0-2]\.\d+(-[0-9A-Za-z.-]+)?$")   # 1.0.0 … 1.2.x

# The spec's namespace names → ours (linux/syscalls.NAMESPACE_FLAGS).
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mount", "ipc": "ipc", "uts": "uts",
              "user": "user", "cgroup": "cgroup"}

RLIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
           "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE",
           "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING",
           "RLIMIT_STACK")


class BundleError(MinirunError):
    """A bundle minirun cannot run; the message names the JSON path."""


class Fields:
    """Typed reads of one JSON object, each failure naming its path."""

    def __init__(self, obj, path):
        if not isinstance(obj, dict):
            raise BundleError(f"config.json: {path or 'the document'}: want an object, "
                              f"got {json.dumps(obj)[:40]}")
        self.obj, self.path = obj, path

    def at(self, key):
        return f"{self.path}.{key}" if self.path else key

    def get(self, key, kind, default=None, required=False):
        value = self.obj.get(key)
        if value is None:
            if required:
                raise BundleError(f"config.json: {self.at(key)}: required")
            return default
        kinds = (int,) if kind is int else (kind,)
        if not isinstance(value, kinds) or (kind is int and isinstance(value, bool)):
            raise BundleError(f"config.json: {self.at(key)}: want {_KIND[kind]}, "
                              f"got {json.dumps(value)[:40]}")
        return value

    def strings(self, key):
        items = self.get(key, list, [])
        for n, item in enumerate(items):
            if not isinstance(item, str):
                raise BundleError(f"config.json: {self.at(key)}[{n}]: want a string, "
                                  f"got {json.dumps(item)[:40]}")
        return items

    def sub(self, key, required=False):
        return Fields(self.get(key, dict, {}, required), self.at(key))

    def items(self, key):
        """The objects of a list field, each as Fields with its index in the path."""
        return [Fields(item, f"{self.at(key)}[{n}]")
                for n, item in enumerate(self.get(key, list, []))]

    def refuse(self, key, why):
        if self.obj.get(key) not in (None, "", [], {}):
            raise BundleError(f"config.json: {self.at(key)}: {why}")


_KIND = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
         dict: "an object"}


def read_config(bundle):
    """The bundle's config.json, parsed; one line if it is not there or not JSON."""
    if not os.path.isdir(bundle):
        raise BundleError(f"bundle {bundle}: no such directory")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle}: no config.json in it") from None
    except OSError as e:
        raise BundleError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise BundleError(f"config.json: not valid JSON: {e}") from None


def translate(config, bundle, cid, state_dir):
    """config.json (parsed) → (ContainerSpec, annotations). `state_dir` is
    where the runtime keeps this container's files (its bundle, in
    ContainerSpec's words: nothing is written to the OCI bundle)."""
    top = Fields(config, "")
    version = top.get("ociVersion", str, required=True)
    if not SUPPORTED_VERSIONS.match(version):
        raise BundleError(f"config.json: ociVersion: {version!r} is not supported "
                          f"(minirun runs 1.0.0 to 1.2.x)")
    root = top.sub("root", required=True)
    rootfs = os.path.join(bundle, root.get("path", str, required=True))
    linux = top.sub("linux")
    process = translate_process(top.sub("process", required=True))
    namespaces, paths, userns = translate_namespaces(linux)
    rootfs_propagation = linux.get("rootfsPropagation", str, "rprivate")
    from minirun.linux.fs import PROPAGATION
    if rootfs_propagation not in PROPAGATION:
        raise BundleError(f"config.json: linux.rootfsPropagation: {rootfs_propagation!r} is not "
                          f"one of {', '.join(sorted(PROPAGATION))}")
    for key in ("intelRdt", "personality", "timeOffsets", "mountLabel"):
        linux.refuse(key, "not supported by minirun")
    devices = translate_devices(linux)
    resources = translate_resources(linux.sub("resources"), devices)
    cgroup_path = linux.get("cgroupsPath", str, "")
    spec = ContainerSpec(
        id=cid,
        rootfs=Rootfs(layers=[], upperdir="", workdir="", mountpoint=os.path.realpath(rootfs),
                      readonly=root.get("readonly", bool, False), propagation=rootfs_propagation),
        process=process,
        hostname=top.get("hostname", str, ""),
        domainname=top.get("domainname", str, ""),
        bundle=state_dir,
        namespaces=namespaces,
        namespace_paths=paths,
        mounts=[translate_mount(m, bundle) for m in top.items("mounts")],
        devices=devices,
        capabilities=tuple(process.capabilities.bounding) if process.capabilities else (),
        masked_paths=tuple(linux.strings("maskedPaths")),
        readonly_paths=tuple(linux.strings("readonlyPaths")),
        no_new_privileges=top.sub("process").get("noNewPrivileges", bool, False),
        resources=resources,
        userns=userns,
        standard_mounts=False,
        sysctl={k: str(v) for k, v in linux.get("sysctl", dict, {}).items()},
        cgroup_path=cgroup_path,
        hooks=translate_hooks(top.sub("hooks")),
    )
    if spec.hostname and not spec.has_own("uts"):
        raise BundleError("config.json: hostname: set, but the container has no uts "
                          "namespace of its own to set it in")
    if not spec.has_own("mount"):
        # The host's mount namespace: pivot_root would move the host's own
        # root, so chroot(2), as runc does; delete unmounts what it mounted.
        spec.skip = ("mount-namespace", "pivot-root")
    annotations = top.get("annotations", dict, {})
    return spec, linux.get("seccomp", dict), annotations


def translate_process(p):
    """process → Process; also what `exec --process FILE` reads."""
    args = p.strings("args")
    if not args:
        raise BundleError(f"config.json: {p.at('args')}: at least the program to run")
    env = {}
    for n, entry in enumerate(p.strings("env")):
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise BundleError(f"config.json: {p.at('env')}[{n}]: want KEY=VALUE, got {entry!r}")
        env[key] = value
    cwd = p.get("cwd", str, "/")
    if not cwd.startswith("/"):
        raise BundleError(f"config.json: {p.at('cwd')}: want an absolute path, got {cwd!r}")
    u = p.sub("user")
    gids = u.get("additionalGids", list, [])
    for n, g in enumerate(gids):
        if not isinstance(g, int):
            raise BundleError(f"config.json: {u.at('additionalGids')}[{n}]: want an integer")
    user = User(uid=u.get("uid", int, 0), gid=u.get("gid", int, 0), additional_gids=gids,
                umask=u.get("umask", int))
    u.refuse("username", "a Windows field")
    for key, what in (("apparmorProfile", "AppArmor"), ("selinuxLabel", "SELinux")):
        p.refuse(key, f"{what} is not available on this host (or to minirun): "
                      f"remove the field to run without it")
    rlimits = []
    seen = set()
    for r in p.items("rlimits"):
        kind = r.get("type", str, required=True)
        if kind not in RLIMITS:
            raise BundleError(f"config.json: {r.at('type')}: unknown rlimit {kind!r}")
        if kind in seen:
            raise BundleError(f"config.json: {r.at('type')}: {kind} given twice")
        seen.add(kind)
        rlimits.append(Rlimit(kind, r.get("soft", int, required=True),
                              r.get("hard", int, required=True)))
    caps = None
    if p.obj.get("capabilities") is not None:
        c = p.sub("capabilities")
        sets = {}
        for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            names = c.strings(key)
            for n, name in enumerate(names):
                if not _known_capability(name):
                    raise BundleError(f"config.json: {c.at(key)}[{n}]: unknown capability "
                                      f"{name!r}")
            sets[key] = names
        caps = Capabilities(**sets)
    return Process(args=args, env=env, cwd=cwd, user=user, tty=p.get("terminal", bool, False),
                   rlimits=rlimits, capabilities=caps, oom_score_adj=p.get("oomScoreAdj", int))


def _known_capability(name):
    from minirun.linux.caps import cap_number
    try:
        cap_number(name)
        return name.upper().startswith("CAP_")
    except KeyError:
        return False


def translate_namespaces(linux):
    """(new namespaces, {namespace: path to join}, UserNamespace or None).
    A namespace the list leaves out is the host's, shared."""
    new, paths = [], {}
    for ns in linux.items("namespaces"):
        kind = ns.get("type", str, required=True)
        if kind not in NAMESPACES:
            raise BundleError(f"config.json: {ns.at('type')}: unknown or unsupported namespace "
                              f"{kind!r} (want one of {', '.join(NAMESPACES)})")
        name = NAMESPACES[kind]
        if name in new or name in paths:
            raise BundleError(f"config.json: {ns.at('type')}: namespace {kind!r} given twice")
        path = ns.get("path", str, "")
        if path:
            paths[name] = path
        else:
            new.append(name)
    userns = None
    uid_map = [[m.get(k, int, required=True) for k in ("containerID", "hostID", "size")]
               for m in linux.items("uidMappings")]
    gid_map = [[m.get(k, int, required=True) for k in ("containerID", "hostID", "size")]
               for m in linux.items("gidMappings")]
    if "user" in new:
        if not uid_map or not gid_map:
            raise BundleError("config.json: linux.uidMappings: a new user namespace needs "
                              "uidMappings and gidMappings")
        userns = UserNamespace(uid_map, gid_map, layers="as-is")
    elif uid_map or gid_map:
        raise BundleError("config.json: linux.uidMappings: mappings given, but no new user "
                          "namespace in linux.namespaces (one joined by path has its own)")
    return tuple(new), paths, userns


def translate_mount(m, bundle):
    destination = m.get("destination", str, required=True)
    if not destination.startswith("/"):
        raise BundleError(f"config.json: {m.at('destination')}: want an absolute path, "
                          f"got {destination!r}")
    options = m.strings("options")
    kind = m.get("type", str, "")
    if not kind or kind == "none":
        if not {"bind", "rbind"} & set(options):
            raise BundleError(f"config.json: {m.at('type')}: required unless options say "
                              f"bind or rbind")
        kind = "bind"
    source = m.get("source", str, "")
    if kind == "bind":
        source = os.path.join(bundle, source)
        if not os.path.exists(source):
            raise BundleError(f"config.json: {m.at('source')}: {source}: no such file or "
                              f"directory")
        if not {"bind", "rbind"} & set(options):
            options = ["rbind", *options]
    if kind == "cgroup2":
        kind = "cgroup"
    return Mount(kind, destination, source, readonly="ro" in options, flags=options)


def translate_devices(linux):
    devices = []
    for d in linux.items("devices"):
        path = d.get("path", str, required=True)
        kind = d.get("type", str, required=True)
        if kind not in ("c", "b", "u", "p"):
            raise BundleError(f"config.json: {d.at('type')}: want c, b, u or p, got {kind!r}")
        devices.append(Device(path, "c" if kind == "u" else kind, d.get("major", int, 0),
                              d.get("minor", int, 0), d.get("fileMode", int, 0o666),
                              d.get("uid", int, 0), d.get("gid", int, 0)))
    return devices


def translate_resources(r, devices=()):
    """linux.resources → Resources; also `update --resources FILE`. What is
    not given stays as it is (devices None: no device rules)."""
    memory, cpu = r.sub("memory"), r.sub("cpu")
    for key in ("idle", "burst"):
        cpu.refuse(key, "not supported by minirun")
    for key in ("hugepageLimits", "network", "rdma", "unified"):
        r.refuse(key, "not supported by minirun")
    block = r.sub("blockIO")
    block.refuse("leafWeight", NO_LEAF_WEIGHT)
    weight_device = per_device(block, "weightDevice", "weight")
    throttle = [[which, *entry]
                for which, key in (("read_bps", "throttleReadBpsDevice"),
                                   ("write_bps", "throttleWriteBpsDevice"),
                                   ("read_iops", "throttleReadIOPSDevice"),
                                   ("write_iops", "throttleWriteIOPSDevice"))
                for entry in per_device(block, key, "rate")]
    quota = cpu.get("quota", int)
    limit = memory.get("limit", int)
    res = Resources(
        memory=limit if limit is None or limit >= 0 else None,
        memory_swap=memory.get("swap", int),
        cpu_quota=quota if quota is None or quota > 0 else None,
        cpu_period=cpu.get("period", int, 100_000),
        cpu_shares=cpu.get("shares", int) or None,
        cpuset_cpus=cpu.get("cpus", str) or None,
        pids_limit=r.sub("pids").get("limit", int),
        blkio_weight=block.get("weight", int),
        memory_reservation=memory.get("reservation", int),
        memory_swappiness=memory.get("swappiness", int),
        kernel_tcp=memory.get("kernelTCP", int),
        oom_kill_disable=memory.get("disableOOMKiller", bool, False),
        cpuset_mems=cpu.get("mems", str) or None,
        cpu_rt_period=cpu.get("realtimePeriod", int),
        cpu_rt_runtime=cpu.get("realtimeRuntime", int),
        blkio_weight_device=weight_device or None,
        blkio_throttle=throttle or None,
        devices=None)
    # memory.kernel is deprecated by the runtime spec (1.2) and ignored by
    # the kernel since 5.16 (memory.kmem.limit_in_bytes takes no effect):
    # accepted and not applied, as runc does.
    memory.get("kernel", int)
    rules = r.items("devices")
    if rules:
        res.devices = translate_device_rules(rules, devices)
    return res


NO_LEAF_WEIGHT = "no kernel since 5.0 has it (it went with the CFQ scheduler)"


def per_device(block, key, value):
    """One of blockIO's per-device lists → [[major, minor, value], ...]."""
    out = []
    for d in block.items(key):
        d.refuse("leafWeight", NO_LEAF_WEIGHT)
        out.append([d.get("major", int, required=True), d.get("minor", int, required=True),
                    d.get(value, int, required=True)])
    return out


def translate_device_rules(rules, devices):
    """The device cgroup's rules, as minirun keeps them: an allow-list
    after denying everything. A bundle's list must begin by denying all
    (as every engine's does); the devices every container needs (null,
    zero, the ptys...) and the bundle's own linux.devices are allowed too,
    as runc allows them."""
    first = rules[0]
    deny_all = (first.get("allow", bool, required=True) is False
                and first.get("type", str, "a") == "a" and first.obj.get("major") is None
                and first.obj.get("minor") is None and first.get("access", str, "rwm") == "rwm")
    if not deny_all:
        return None if all(r.get("allow", bool, required=True) for r in rules) else \
            _refuse_rules(first)
    allowed = []
    for r in rules[1:]:
        if not r.get("allow", bool, required=True):
            _refuse_rules(r)
        kind = r.get("type", str, "a")
        access = r.get("access", str, "rwm")
        if kind not in ("a", "c", "b") or not access or set(access) - set("rwm"):
            raise BundleError(f"config.json: {r.at('type')}: want type a, c or b and access "
                              f"of r, w, m")
        allowed.append(DeviceRule(kind, r.get("major", int), r.get("minor", int), access))
    allowed += [rule for rule in DEFAULT_DEVICE_RULES if rule not in allowed]
    allowed += [DeviceRule(d.type, d.major, d.minor) for d in devices if d.type != "p"]
    return allowed


def _refuse_rules(r):
    raise BundleError(f"config.json: {r.path}: minirun keeps device rules as one deny-all "
                      f"followed by allow rules; this deny rule cannot be kept")


def translate_hooks(h):
    def hooks(key):
        out = []
        for hook in h.items(key):
            path = hook.get("path", str, required=True)
            if not path.startswith("/"):
                raise BundleError(f"config.json: {hook.at('path')}: want an absolute path")
            timeout = hook.get("timeout", int)
            if timeout is not None and timeout <= 0:
                raise BundleError(f"config.json: {hook.at('timeout')}: want more than 0 seconds")
            out.append(Hook(path, hook.strings("args"), hook.strings("env"), timeout))
        return out
    return Hooks(create_runtime=hooks("createRuntime"), prestart=hooks("prestart"),
                 create_container=hooks("createContainer"),
                 start_container=hooks("startContainer"),
                 poststart=hooks("poststart"), poststop=hooks("poststop"))


def default_config(rootless=False):
    """What `minirun-oci spec` writes: a busybox-sized container running sh
    on a terminal, as `runc spec` gives (and Docker's defaults for masks,
    capabilities and devices)."""
    from minirun.runtime.spec import DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS
    caps = ["CAP_" + c for c in DEFAULT_CAPABILITIES]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "minirun",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS)},
    }
