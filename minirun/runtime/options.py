"""Door 1: `minirun run` flags + an image's config → a ContainerSpec.

Everything here is checked before any fork, so bad input never reaches the
kernel: a bad -v, a missing host path, an unknown user or capability.
"""
import os
import re
import stat

from minirun.errors import UsageError
from minirun.image.store import Image
from minirun.linux import caps
from minirun.record import Factory, Record
from minirun.runtime.spec import (
    DEFAULT_CAPABILITIES, DEFAULT_DEVICE_RULES, DEFAULT_NAMESPACES, MASKED_PATHS, READONLY_PATHS,
    SKIPPABLE, ContainerSpec, Device, DeviceRule, Mount, Process, Resources, Rootfs)
from minirun.runtime.etcfiles import etc_file_paths
from minirun.runtime.users import resolve_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"     # patterns are compiled on first use (re's cache)


class RunOptions(Record):
    command: list[str] = Factory(list)
    entrypoint: str | None = None
    env: list[str] = Factory(list)
    env_files: list[str] = Factory(list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    name: str | None = None
    volumes: list[str] = Factory(list)
    tmpfs: list[str] = Factory(list)
    read_only: bool = False
    cap_add: list[str] = Factory(list)
    cap_drop: list[str] = Factory(list)
    privileged: bool = False
    tty: bool = False
    interactive: bool = False
    init: bool = False
    devices: list[str] = Factory(list)
    security_opt: list[str] = Factory(list)
    userns: str | None = None          # remap or host; None: the store's default
    network: str = "bridge"
    publish: list[str] = Factory(list)
    dns: list[str] = Factory(list)
    add_hosts: list[str] = Factory(list)
    rm: bool = False
    memory: str | None = None
    memory_swap: str | None = None
    cpus: str | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    blkio_weight: int | None = None
    skip: list[str] = Factory(list)   # teaching: SKIPPABLE steps to leave out
    pull: str = "missing"              # the image: pulled when missing, always, never


def parse_env(entries, env_files):
    """-e KEY=VAL (or -e KEY: take the host's value) and --env-file lines."""
    result = {}
    lines = []
    for path in env_files:
        try:
            with open(path) as f:
                lines += [(line.strip(), f"{path}:{n}") for n, line in enumerate(f, 1)]
        except OSError as e:
            raise UsageError(f"--env-file {path}: {e.strerror}")
    lines += [(e, "-e") for e in entries]
    for line, where in lines:
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not key or any(c.isspace() for c in key):
            raise UsageError(f"{where}: invalid environment variable {line!r}")
        if eq:
            result[key] = value
        elif key in os.environ:
            result[key] = os.environ[key]
    return result


def parse_volume(spec):
    """-v HOST:CONTAINER[:ro|rw] → a bind Mount."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume specification {spec!r}: want HOST:CONTAINER[:ro]")
    host, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"invalid volume specification {spec!r}: mode must be ro or rw, not {mode!r}")
    if not host.startswith("/"):
        raise UsageError(f"invalid volume specification {spec!r}: the host path must be absolute "
                         f"(named volumes are not supported)")
    if not target.startswith("/"):
        raise UsageError(f"invalid volume specification {spec!r}: the container path must be absolute")
    if not os.path.exists(host):
        raise UsageError(f"invalid volume specification {spec!r}: host path {host} does not exist")
    return Mount(type="bind", source=os.path.realpath(host), target=os.path.normpath(target),
                 readonly=(mode == "ro"))


def parse_tmpfs(spec):
    """--tmpfs PATH[:OPTIONS] → a tmpfs Mount."""
    target, _, options = spec.partition(":")
    if not target.startswith("/"):
        raise UsageError(f"invalid --tmpfs {spec!r}: the path must be absolute")
    return Mount(type="tmpfs", target=os.path.normpath(target), options=options or "mode=1777")


DOCKER_INIT = "/sbin/docker-init"        # where Docker puts its init, too
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/docker-init")


def init_mount():
    """--init: a small static init (Debian's tini-static, which Docker ships as
    docker-init) bound read-only into the container to be its PID 1. Static,
    so it needs nothing from the image; not a host interpreter, so the
    container's /proc/1/exe leads to nothing worth having."""
    for path in INIT_BINARIES:
        if os.path.exists(path):
            return Mount(type="bind", source=path, target=DOCKER_INIT, readonly=True)
    raise UsageError("--init needs tini: install Debian's tini package (apt-get install tini)")


def _device_kind(st):
    """'c' for a character device, 'b' for a block device, else None."""
    return "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else None


def parse_device(text):
    """--device HOST[:CONTAINER[:PERMISSIONS]] → (the node to make inside,
    the rule that lets the container open it)."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise UsageError(f"--device {text}: want HOST[:CONTAINER[:PERMISSIONS]]")
    host, target, access = parts[0], parts[0], "rwm"
    if len(parts) == 2 and parts[1] and not parts[1].startswith("/") and set(parts[1]) <= set("rwm"):
        access = parts[1]                     # HOST:PERMISSIONS, as Docker reads it
    elif len(parts) >= 2:
        target = parts[1] or host
        access = parts[2] if len(parts) == 3 else access
    if not access or set(access) - set("rwm"):
        raise UsageError(f"--device {text}: invalid permissions {access!r}: use r, w and m")
    if not target.startswith("/"):
        raise UsageError(f"--device {text}: the container path must be absolute")
    try:
        st = os.stat(host)
    except OSError as e:
        raise UsageError(f"--device {text}: {host}: {e.strerror}") from None
    kind = _device_kind(st)
    if kind is None:
        raise UsageError(f"--device {text}: {host} is not a device")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return (Device(os.path.normpath(target), kind, major, minor, stat.S_IMODE(st.st_mode)),
            DeviceRule(kind, major, minor, access))


# The minimal /dev every container gets is made by the child; --privileged
# adds the host's other nodes, but not these.
OWN_DEV_NODES = {"null", "zero", "full", "random", "urandom", "tty", "console", "ptmx"}


def host_devices():
    """--privileged: every device node under the host's /dev, made again inside."""
    found = []
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if d not in ("pts", "shm", "mqueue")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            kind = _device_kind(st)
            if kind and not (dirpath == "/dev" and name in OWN_DEV_NODES):
                found.append(Device(path, kind, os.major(st.st_rdev), os.minor(st.st_rdev),
                                    stat.S_IMODE(st.st_mode)))
    return found


def resolve_devices(opts):
    """(nodes to make, the allow-list): Docker's defaults plus --device;
    --privileged makes the host's nodes and lifts the list."""
    if opts.privileged:
        return host_devices() + [parse_device(d)[0] for d in opts.devices], None
    pairs = [parse_device(d) for d in opts.devices]
    return [d for d, _ in pairs], list(DEFAULT_DEVICE_RULES) + [r for _, r in pairs]


def resolve_skips(opts):
    """--skip STEP...: the steps left out, checked against SKIPPABLE. Without
    a mount namespace there can be no pivot_root: it would move the host's
    own root, so mount-namespace takes pivot-root with it."""
    skip = list(opts.skip)
    for name in skip:
        if name not in SKIPPABLE:
            raise UsageError(f"--skip {name}: not a step that can be skipped "
                             f"(one of: {', '.join(SKIPPABLE)})")
    if "mount-namespace" in skip:
        skip.append("pivot-root")
    if skip and opts.userns == "remap":
        raise UsageError("--skip needs --userns=host: it shows what root in a container "
                         "can do when a step is left out")
    return tuple(n for n in SKIPPABLE if n in skip)


def resolve_capabilities(opts):
    """Docker's default set, plus --cap-add, minus --cap-drop ('ALL' works in both)."""
    host = caps.bounding_set()
    if opts.privileged or "capabilities" in opts.skip:
        return tuple(caps.cap_name(n) for n in sorted(host))

    def names(values, flag):
        out = set()
        for v in values:
            if v.upper() == "ALL":
                out |= {caps.cap_name(n) for n in host}
                continue
            try:
                number = caps.cap_number(v)
            except KeyError:
                raise UsageError(f"{flag}: unknown capability {v!r}")
            if number not in host:
                raise UsageError(f"{flag}: CAP_{caps.cap_name(number)} is not in this host's bounding set")
            out.add(caps.cap_name(number))
        return out

    keep = (set(DEFAULT_CAPABILITIES) | names(opts.cap_add, "--cap-add")) - names(opts.cap_drop, "--cap-drop")
    return tuple(sorted(keep))


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value, flag):
    """'64m', '1g', '512k', '1048576' → bytes (Docker's binary units)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?", value.strip().lower())
    if not m:
        raise UsageError(f"{flag} {value}: not a size (examples: 64m, 1g, 512k)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_cpuset(value, ncpus):
    """'0-1,3' → checked against the host's CPUs."""
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", value):
        raise UsageError(f"--cpuset-cpus {value}: want a list like 0-1,3")
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        if int(hi or lo) >= ncpus or int(lo) > int(hi or lo):
            raise UsageError(f"--cpuset-cpus {value}: this host has CPUs 0-{ncpus - 1}")
    return value


def parse_resources(opts):
    """The cgroup flags → Resources, checked against the host."""
    r = Resources()
    ncpus = os.cpu_count() or 1
    if opts.memory is not None:
        r.memory = parse_size(opts.memory, "--memory")
        if r.memory < 6 << 20:
            raise UsageError("--memory: the minimum allowed is 6m")
    if opts.memory_swap is not None:
        if r.memory is None:
            raise UsageError("--memory-swap needs --memory as well")
        r.memory_swap = -1 if opts.memory_swap == "-1" else parse_size(opts.memory_swap, "--memory-swap")
        if r.memory_swap != -1 and r.memory_swap < r.memory:
            raise UsageError("--memory-swap must be at least --memory (it counts memory + swap)")
    if opts.cpus is not None:
        try:
            cpus = float(opts.cpus)
        except ValueError:
            raise UsageError(f"--cpus {opts.cpus}: not a number") from None
        if not 0.01 <= cpus <= ncpus:
            raise UsageError(f"--cpus {opts.cpus}: range of CPUs is from 0.01 to {ncpus}, "
                             f"as there are only {ncpus} CPUs available")
        r.cpu_quota = int(cpus * r.cpu_period)
    if opts.cpu_shares is not None:
        if not 2 <= opts.cpu_shares <= 262144:
            raise UsageError("--cpu-shares: must be between 2 and 262144")
        r.cpu_shares = opts.cpu_shares
    if opts.cpuset_cpus is not None:
        r.cpuset_cpus = parse_cpuset(opts.cpuset_cpus, ncpus)
    if opts.pids_limit is not None:
        r.pids_limit = opts.pids_limit
    if opts.blkio_weight is not None:
        if not 10 <= opts.blkio_weight <= 1000:
            raise UsageError("--blkio-weight: must be between 10 and 1000")
        r.blkio_weight = opts.blkio_weight
    return r


def process_args(opts, config):
    """Docker's rule: ENTRYPOINT + CMD, where --entrypoint replaces the
    first (and clears the image's CMD) and run's arguments replace the second."""
    entrypoint = config.get("Entrypoint") or []
    cmd = config.get("Cmd") or []
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = []
    if opts.command:
        cmd = list(opts.command)
    args = list(entrypoint) + list(cmd)
    if not args:
        raise UsageError("no command specified: the image has no Cmd or Entrypoint, give one after the image")
    return args


def network_namespaces(opts):
    """--network's modes: the namespaces to create, and the hostname implied.
    host and container:ID join a network namespace instead of making one."""
    mode = opts.network
    joins = mode == "host" or mode.startswith("container:")
    if opts.publish and (joins or mode == "none"):
        raise UsageError(f"-p needs a bridge network, not --network {mode}")
    if mode == "container:":
        raise UsageError("--network container: give the container's name or id")
    if not joins:
        return DEFAULT_NAMESPACES, None
    import socket
    without_net = tuple(ns for ns in DEFAULT_NAMESPACES if ns != "net")
    return without_net, socket.gethostname() if mode == "host" else None


def parse_network_requests(opts):
    """-p and --dns, checked: (ports, dns servers). What checks them is
    imported only when they are given: a plain `run` does not pay for it."""
    ports = []
    if opts.publish:
        from minirun.network.networks import parse_port
        ports = [parse_port(p) for p in opts.publish]
    if opts.dns:
        import ipaddress
        for ip in opts.dns:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise UsageError(f"--dns {ip}: not an IP address") from None
    return ports, list(opts.dns)


def parse_add_host(text, gateway=None):
    """--add-host NAME:IP (IP may be `host-gateway`, the bridge's address)."""
    import ipaddress
    name, sep, ip = text.partition(":")
    if not sep or not name:
        raise UsageError(f"--add-host {text}: expected NAME:IP")
    if ip == "host-gateway":
        if gateway is None:
            raise UsageError(f"--add-host {text}: host-gateway needs a bridge network")
        ip = gateway
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise UsageError(f"--add-host {text}: {ip!r} is not an IP address") from None
    return name, ip


def user_namespace(opts, image, store_root):
    """--userns: (the mapping or None, the layer dirs the overlay stacks).
    Without idmapped mounts, the layers are chowned copies in the range."""
    from minirun.runtime import userns
    mapping = userns.resolve(store_root, "host" if opts.skip else opts.userns)
    if mapping is None:
        return None, image.lower_links
    if opts.privileged:
        raise UsageError("--privileged needs --userns=host: a privileged container's root is "
                         "the host's root")
    if opts.network == "host" or opts.network.startswith("container:"):
        raise UsageError(f"--network {opts.network} needs --userns=host: the network namespace "
                         f"would not belong to the container's user namespace")
    if mapping.layers == "idmapped":
        return mapping, image.lower_links
    from minirun.image.store import Store
    store = Store(store_root)
    uid, gid = mapping.root
    return mapping, [store.chowned_layer(d, uid, gid) for d in image.config["rootfs"]["diff_ids"]]


def distinct_layers(layers):
    """The layers bottom first, a layer listed twice kept only where it is
    highest: overlayfs refuses one directory twice in lowerdir (ELOOP), and
    the higher copy shows all the lower one would. Two RUN steps that
    change nothing both make the same empty layer."""
    seen, kept = set(), []
    for layer in reversed(layers):
        if layer not in seen:
            seen.add(layer)
            kept.append(layer)
    return kept[::-1]


def check_no_nul_bytes(spec):
    """execve(2) and the kernel take C strings: a NUL byte in the command,
    the environment, the working directory or the hostname (from an
    --env-file or an image's config, say) is refused here, before any fork."""
    p = spec.process
    for what, values in (("command", p.args), ("environment", [f"{k}={v}" for k, v in p.env.items()]),
                         ("working directory", [p.cwd]), ("hostname", [spec.hostname])):
        if any("\0" in v for v in values):
            raise UsageError(f"the {what} contains a NUL byte, which no program can be given")


def build_spec(opts: RunOptions, image: Image, container_id, bundle, store_root):
    config = image.config.get("config") or {}
    if opts.name is not None and not re.match(NAME_RE, opts.name):
        raise UsageError(f"invalid container name {opts.name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    namespaces, hostname = network_namespaces(opts)
    skip = resolve_skips(opts)
    namespaces = tuple(ns for ns in namespaces if f"{ns}-namespace" not in skip)
    hostname = opts.hostname or hostname or container_id[:12]
    user = resolve_user(opts.user or config.get("User") or "", image.layer_dirs)

    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    if opts.tty:
        env["TERM"] = "xterm"
    env["HOME"] = user.home
    env.update(parse_env(opts.env, opts.env_files))

    workdir = opts.workdir or config.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise UsageError(f"-w {workdir}: the working directory must be an absolute path")

    mounts = [parse_volume(v) for v in opts.volumes] + [parse_tmpfs(t) for t in opts.tmpfs]
    args = process_args(opts, config)
    if opts.init:
        mounts.append(init_mount())
        args = [DOCKER_INIT, "--"] + args
    devices, device_rules = resolve_devices(opts)
    capabilities = resolve_capabilities(opts)
    from minirun.runtime import seccomp
    choice = seccomp.parse_security_opts(opts.security_opt)
    seccomp_filter = None if opts.privileged else seccomp.prepare(store_root, choice, capabilities)
    mapping, layers = user_namespace(opts, image, store_root)
    if mapping is not None:
        namespaces = namespaces + ("user",)
    resources = parse_resources(opts)
    resources.devices = device_rules
    spec = ContainerSpec(
        id=container_id,
        name=opts.name or "",
        bundle=bundle,
        rootfs=Rootfs(layers=distinct_layers(layers),
                      upperdir=os.path.join(bundle, "upper"),
                      workdir=os.path.join(bundle, "work"),
                      mountpoint=os.path.join(bundle, "rootfs"),
                      readonly=opts.read_only),
        process=Process(args=args, env=env, cwd=workdir, user=user,
                        tty=opts.tty, stdin=opts.interactive),
        hostname=hostname,
        namespaces=namespaces,
        network=opts.network,
        mounts=mounts,
        devices=devices,
        etc_files=etc_file_paths(bundle),
        capabilities=capabilities,
        seccomp=seccomp_filter,
        userns=mapping,
        privileged=opts.privileged,
        resources=resources,
        stop_signal=config.get("StopSignal") or "SIGTERM",
        masked_paths=() if opts.privileged else MASKED_PATHS,
        readonly_paths=() if opts.privileged else READONLY_PATHS,
        skip=skip,
    )
    check_no_nul_bytes(spec)
    return spec
