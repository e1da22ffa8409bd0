"""ContainerSpec: everything needed to start a container, as plain data.

minirun's analogue of the OCI runtime config.json. Every door (run, build's
RUN, an OCI bundle) fills one in; `runtime.start.start(spec)` runs it. A
spec is built and checked before any fork, so a bad flag never reaches
the kernel.
"""
from minirun.record import Factory, Record, to_dict

# Docker's default capabilities (moby's oci/caps/defaults.go).
DEFAULT_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
    "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
    "AUDIT_WRITE",
)

# Paths hidden from the container, and paths it may read but not write:
# they expose or control the host kernel. Docker's defaults.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi", "/proc/interrupts", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

# Every namespace a container gets; `user` is left to the caller's choice.
DEFAULT_NAMESPACES = ("pid", "mount", "uts", "ipc", "net", "cgroup")

# `run --skip STEP`, for teaching: steps of the start sequence a learner may
# leave out to see what each one stops. Each is one branch in start.py or
# child.py (the namespaces' branches test spec.namespaces).
SKIPPABLE = {
    "pid-namespace": "the container sees (and can signal) every process of the host",
    "mount-namespace": "its mounts land in the host's mount table, and it sees the host's",
    "pivot-root": "chroot(2) instead: the host's / stays mounted above the container's",
    "proc": "no /proc: ps, top and /proc/self are gone",
    "cgroup-namespace": "it sees the host's whole cgroup tree, and its own path in it",
    "capabilities": "its root keeps every capability of the host's root",
}


class Rootfs(Record):
    """An overlay: read-only image layers (top first) under a writable upper
    dir. With no layers, `mountpoint` is a directory someone else prepared
    (an OCI bundle's rootfs) and is bound onto itself as it is."""
    layers: list[str]
    upperdir: str
    workdir: str
    mountpoint: str
    readonly: bool = False
    propagation: str = "rprivate"   # of every mount, host's included, in the container's namespace


class Mount(Record):
    """A volume: `bind` of a host path, or a fresh `tmpfs`. An OCI bundle
    may also ask for proc, sysfs, devpts, mqueue and cgroup mounts, and for
    mount flags by name (linux/fs.py's MOUNT_OPTIONS: nosuid, rbind,
    rprivate...)."""
    type: str              # "bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue" or "cgroup"
    target: str            # absolute path inside the container
    source: str = ""       # host path, for bind
    readonly: bool = False
    options: str = ""      # filesystem data, e.g. tmpfs "size=64m,mode=1777"
    flags: list[str] = Factory(list)   # mount flags by name


class User(Record):
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = Factory(list)
    home: str = "/"
    umask: int | None = None            # None: the one minirun was started with


class Rlimit(Record):
    """A resource limit set before execve — setrlimit(2): e.g. RLIMIT_NOFILE."""
    type: str
    soft: int
    hard: int


class Capabilities(Record):
    """The five capability sets of capabilities(7), given one by one (an OCI
    bundle does). Without them, a container's root holds spec.capabilities
    in its bounding, permitted and effective sets, as Docker's does."""
    bounding: list[str] = Factory(list)
    effective: list[str] = Factory(list)
    permitted: list[str] = Factory(list)
    inheritable: list[str] = Factory(list)
    ambient: list[str] = Factory(list)


class Process(Record):
    args: list[str]
    env: dict[str, str]
    cwd: str = "/"
    user: User = Factory(User)
    tty: bool = False
    stdin: bool = False
    rlimits: list[Rlimit] = Factory(list)
    capabilities: Capabilities | None = None
    oom_score_adj: int | None = None    # how readily the OOM killer picks it, -1000..1000


class DeviceRule(Record):
    """One entry of the device allow-list, in cgroup v1's devices.allow terms:
    type c (character), b (block) or a (all); major and minor (None: any);
    access: r read, w write, m mknod."""
    type: str
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def __str__(self):
        def num(n):
            return "*" if n is None else str(n)
        return f"{self.type} {num(self.major)}:{num(self.minor)} {self.access}"


# What a container may open by default, as Docker allows it: any node may be
# made (mknod), only these opened. A node for a host disk or /dev/kmsg can
# exist in the container (made there, or shipped in an image) but not be used.
DEFAULT_DEVICE_RULES = (
    DeviceRule("c", None, None, "m"), DeviceRule("b", None, None, "m"),
    DeviceRule("c", 1, 3), DeviceRule("c", 1, 5), DeviceRule("c", 1, 7),   # null zero full
    DeviceRule("c", 1, 8), DeviceRule("c", 1, 9),                          # random urandom
    DeviceRule("c", 5, 0), DeviceRule("c", 5, 1), DeviceRule("c", 5, 2),   # tty console ptmx
    DeviceRule("c", 136, None),                                            # pts/*
)


class Device(Record):
    """--device: a host device node recreated in the container's /dev."""
    path: str              # inside the container
    type: str              # c or b (an OCI bundle's may be p: a FIFO)
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


class Resources(Record):
    """cgroup limits; None leaves the kernel's default (no limit)."""
    memory: int | None = None          # bytes
    memory_swap: int | None = None     # memory + swap, bytes; -1 unlimited
    cpu_quota: int | None = None       # microseconds of CPU per period
    cpu_period: int = 100_000
    cpu_shares: int | None = None      # relative weight, default 1024
    cpuset_cpus: str | None = None     # "0-1", "0,2"
    pids_limit: int | None = None
    blkio_weight: int | None = None    # 10..1000
    # What OCI bundles may also ask for (cgroup v1 names; v2 where it has them):
    memory_reservation: int | None = None   # soft limit, bytes (v2: memory.low)
    memory_swappiness: int | None = None    # 0..100, v1 only
    kernel_tcp: int | None = None           # TCP buffer memory, bytes, v1 only
    oom_kill_disable: bool = False          # v1 only
    cpuset_mems: str | None = None          # memory nodes, "0"
    cpu_rt_period: int | None = None        # realtime scheduling, v1 only
    cpu_rt_runtime: int | None = None
    blkio_weight_device: list[list[int]] | None = None   # [[major, minor, weight]]
    blkio_throttle: list[list] | None = None  # [["read_bps", major, minor, rate]]: read/write, bps/iops
    devices: list[DeviceRule] | None = Factory(  # the allow-list; None: every device (--privileged)
        lambda: list(DEFAULT_DEVICE_RULES))


class Port(Record):
    """-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]: a published port."""
    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"

    def __str__(self):
        return f"{self.container_port}/{self.proto} -> {self.host_ip}:{self.host_port}"


class NetworkAttachment(Record):
    """A place on a bridge network: what the parent wires up at start."""
    network: str           # "bridge" or a user network's name
    bridge: str            # the host's bridge device, e.g. minirun0
    subnet: str
    gateway: str
    address: str           # the container's eth0 address, leased at create
    prefixlen: int
    ports: list[Port] = Factory(list)


class UserNamespace(Record):
    """--userns=remap: ids inside the container mapped onto a range of the
    host's (runtime/userns.py). Each map line: [first inside, first outside, count]."""
    uid_map: list[list[int]]
    gid_map: list[list[int]]
    layers: str = "idmapped"   # how the image's layers get their owners: "idmapped" or "chowned"

    @property
    def root(self):
        """The host's uid and gid for the container's root."""
        return self.uid_map[0][1], self.gid_map[0][1]


class SeccompFilter(Record):
    """The system calls the container may make (runtime/seccomp.py): what
    the child loads before execve, and what --explain and inspect say."""
    profile: str        # "default" or the profile's path
    program: str        # the compiled BPF program, in the store
    rules: int          # how many rules the profile gave this container


class Hook(Record):
    """A program an OCI bundle runs at a point of the lifecycle; it reads the
    container's state (JSON) on its stdin and must finish within `timeout`
    seconds (None: no limit)."""
    path: str
    args: list[str] = Factory(list)
    env: list[str] = Factory(list)
    timeout: int | None = None


class Hooks(Record):
    """When each runs, per the OCI runtime spec: create_runtime in the
    runtime's namespaces once the container's exist; create_container
    inside them, before pivot_root; prestart (deprecated) in the runtime's
    namespaces when `start` is called; start_container inside the container
    just before its program; poststart after `start`; poststop after
    `delete`."""
    create_runtime: list[Hook] = Factory(list)
    prestart: list[Hook] = Factory(list)
    create_container: list[Hook] = Factory(list)
    start_container: list[Hook] = Factory(list)
    poststart: list[Hook] = Factory(list)
    poststop: list[Hook] = Factory(list)


class ContainerSpec(Record):
    id: str
    rootfs: Rootfs
    process: Process
    hostname: str
    bundle: str                      # the container's directory on the host
    name: str = ""
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    network: str = "none"            # none, host, container:<id>, or a network's name
    attachment: NetworkAttachment | None = None
    namespace_paths: dict[str, str] = Factory(dict)  # join, don't create
    mounts: list[Mount] = Factory(list)
    devices: list[Device] = Factory(list)
    etc_files: dict[str, str] = Factory(dict)   # /etc/hosts → host file
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    masked_paths: tuple[str, ...] = MASKED_PATHS
    readonly_paths: tuple[str, ...] = READONLY_PATHS
    no_new_privileges: bool = True
    privileged: bool = False
    resources: Resources = Factory(Resources)
    seccomp: SeccompFilter | None = None       # None: unconfined
    userns: UserNamespace | None = None        # None: the host's (--userns=host)
    stop_signal: str = "SIGTERM"
    skip: tuple[str, ...] = ()                 # SKIPPABLE steps left out (run --skip)
    # What an OCI bundle may say and a Docker-style container leaves to defaults:
    standard_mounts: bool = True     # /proc, /sys, /dev, /sys/fs/cgroup as Docker mounts
                                     # them; False: `mounts` is the whole list
    domainname: str = ""
    sysctl: dict[str, str] = Factory(dict)
    cgroup_path: str = ""            # "": minirun/<id>; "/a/b": that path in each hierarchy
    hooks: Hooks = Factory(Hooks)

    @property
    def cgroup(self):
        """The container's cgroup, as the cgroup drivers name it."""
        return self.cgroup_path or self.id

    def has_own(self, ns):
        """Whether the container has a namespace of this kind apart from
        minirun's: a new one, or one joined by path."""
        return ns in self.namespaces or ns in self.namespace_paths


def spec_to_dict(spec):
    return to_dict(spec)


def spec_from_dict(d):
    """The inverse of spec_to_dict, for a spec read back from config.json."""
    d = dict(d)
    d["rootfs"] = Rootfs(**d["rootfs"])
    process = dict(d["process"])
    process["user"] = User(**process["user"])
    process["rlimits"] = [Rlimit(**r) for r in process.get("rlimits", [])]
    if process.get("capabilities"):
        process["capabilities"] = Capabilities(**process["capabilities"])
    d["process"] = Process(**process)
    d["mounts"] = [Mount(**m) for m in d["mounts"]]
    d["devices"] = [Device(**x) for x in d.get("devices", [])]
    d.setdefault("skip", ())
    d["hooks"] = Hooks(**{when: [Hook(**h) for h in hooks]
                          for when, hooks in d.get("hooks", {}).items()})
    resources = dict(d["resources"])
    if resources.get("devices") is not None:
        resources["devices"] = [DeviceRule(**r) for r in resources["devices"]]
    d["resources"] = Resources(**resources)
    if d.get("seccomp"):
        d["seccomp"] = SeccompFilter(**d["seccomp"])
    if d.get("userns"):
        d["userns"] = UserNamespace(**d["userns"])
    if d.get("attachment"):
        a = dict(d["attachment"])
        a["ports"] = [Port(**p) for p in a["ports"]]
        d["attachment"] = NetworkAttachment(**a)
    for key in ("namespaces", "capabilities", "masked_paths", "readonly_paths", "skip"):
        d[key] = tuple(d[key])
    return ContainerSpec(**d)
