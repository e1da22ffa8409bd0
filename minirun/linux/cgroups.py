"""Control groups: limits and accounting for a container's processes.

One interface, two implementations, chosen by probing the host's mounts once:

    cgroup v2  one tree (/sys/fs/cgroup), controllers enabled per level through
               cgroup.subtree_control; files memory.max, cpu.max, pids.max...
    cgroup v1  one tree per controller (/sys/fs/cgroup/memory, .../cpu...);
               files memory.limit_in_bytes, cpu.cfs_quota_us, pids.max...

A hybrid host (v1 controllers plus a cgroup2 mount holding almost none of
them) is driven through v1, where the controllers are. See cgroups(7).
Every path is relative to a root given at construction, so tests can lay out
a temporary directory like cgroupfs and point a Cgroups object at it.
"""
import os
import signal
import time

from minirun.linux import explain

PARENT = "minirun"     # every container's cgroup is PARENT/<container id>


def relative(name):
    """Where a container's cgroup sits below a hierarchy's root: PARENT/<id>,
    or, for a path an OCI bundle gives ("/default/web"), that path."""
    return name.lstrip("/") if name.startswith("/") else os.path.join(PARENT, name)


def _remove_parent(name, path):
    """minirun's own PARENT goes when its last container does; the parents
    of a path an engine chose are the engine's to keep."""
    if not name.startswith("/"):
        try:
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _write(path, value):
    explain.step(f'write("{path}", "{value}")', "cgroups(7)")
    with open(path, "w") as f:
        f.write(str(value))


def _own_cgroup(controller):
    """This process's cgroup below its hierarchy's root, from /proc/self/cgroup
    ("0::/path" on v2, "N:pids,...:/path" on v1)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return path.lstrip("/")
    return None


# A grace period here is 10-15 ms: a write every 5 ms keeps the lock warm
# until this process attaches a container (add() ends the warming), for at
# most 200 ms.
WARM_EVERY, WARM_WRITES = 0.005, 40
_warming = False


def attach_early(cgroup):
    """Start now, on a thread, the wait that the container's attach would
    make later: moving a process into a cgroup (step 5) takes a kernel lock,
    cgroup_threadgroup_rwsem, whose writer first waits for an RCU grace
    period — 10-15 ms here, the longest wait of a start — unless another
    writer took it within the last grace period. Writing our own pid to our
    own cgroup.procs (a move that moves nothing) takes that lock meanwhile,
    while the caller prepares the container, and again every few
    milliseconds until the real attach, which then finds the wait over. The
    lock is the kernel's one for all hierarchies, v1 and v2. `cgroup`: the
    driver (detect()), or None."""
    global _warming
    own_procs = cgroup.own_procs() if cgroup is not None else None
    if own_procs is None:
        return
    import threading

    def attach_self():
        try:
            for _ in range(WARM_WRITES):
                if not _warming:
                    return
                with open(own_procs, "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(WARM_EVERY)
        except OSError:
            pass          # only an optimisation: the real attach will wait instead
    explain.step(f'write("{own_procs}", "{os.getpid()}") on a thread, every '
                 f'{WARM_EVERY * 1000:.0f} ms until the container\'s attach', "cgroups(7)")
    _warming = True
    threading.Thread(target=attach_self, daemon=True).start()


def _attach(procs_files, pid):
    """Step 5's move of the container's first process, in each hierarchy;
    attach_early's warming ends."""
    global _warming
    for path in procs_files:
        _write(path, pid)
    _warming = False


def _rmdir_retrying(path, pids):
    """A cgroup can be removed once its last process is gone: SIGKILL what
    is left (again and again, should something still be forking) and retry
    for up to 5 s, the moment the kernel takes to reap."""
    for _ in range(500):
        _kill_all(pids())
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    os.rmdir(path)


def _keyed(text):
    """'key value' lines (memory.events, cpu.stat...) → dict of ints."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def shares_to_weight(shares):
    """cpu.shares (2..262144, default 1024) → cpu.weight (1..10000, default 100), as runc maps it."""
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight):
    """blkio.weight (10..1000) → io.weight (1..10000)."""
    return 1 + ((weight - 10) * 9999) // 990


class CgroupV2:
    version = 2
    CONTROLLERS = ("cpu", "cpuset", "memory", "pids", "io")

    def __init__(self, root="/sys/fs/cgroup"):
        self.root = root

    def path(self, name):
        return os.path.join(self.root, relative(name))

    def available(self):
        return set(_read(os.path.join(self.root, "cgroup.controllers")).split())

    # Which controller each limit needs, and the flag that asks for it.
    NEEDS = (("memory", "memory", "--memory"), ("memory_swap", "memory", "--memory-swap"),
             ("cpu_quota", "cpu", "--cpus"), ("cpu_shares", "cpu", "--cpu-shares"),
             ("cpuset_cpus", "cpuset", "--cpuset-cpus"), ("pids_limit", "pids", "--pids-limit"),
             ("blkio_weight", "io", "--blkio-weight"),
             ("memory_reservation", "memory", "memory.reservation"),
             ("cpuset_mems", "cpuset", "cpu.mems"),
             ("blkio_weight_device", "io", "blockIO.weightDevice"),
             ("blkio_throttle", "io", "blockIO.throttle*Device"))
    IO_MAX_KEYS = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops",
                   "write_iops": "wiops"}
    V1_ONLY = (("memory_swappiness", "memory.swappiness"), ("kernel_tcp", "memory.kernelTCP"),
               ("oom_kill_disable", "memory.disableOOMKiller"),
               ("cpu_rt_period", "cpu.realtimePeriod"), ("cpu_rt_runtime", "cpu.realtimeRuntime"))

    def create(self, name):
        """mkdir the container's cgroup, enabling controllers on the way down,
        each on its own: one this tree is not allowed to enable (not
        delegated to it) leaves the others working."""
        wanted = [c for c in self.CONTROLLERS if c in self.available()]
        parent = os.path.dirname(self.path(name))
        os.makedirs(parent, exist_ok=True)
        levels = [self.root]
        for part in os.path.relpath(parent, self.root).split("/"):
            levels.append(os.path.join(levels[-1], part))
        for level in levels:
            control = os.path.join(level, "cgroup.subtree_control")
            missing = [c for c in wanted if c not in set(_read(control).split())]
            try:
                if missing:
                    _write(control, " ".join("+" + c for c in missing))
            except OSError:           # one was refused: the others, one by one
                for c in missing:
                    try:
                        _write(control, "+" + c)
                    except OSError:
                        pass          # apply() names it if a flag needs it
        explain.step(f'mkdir("{self.path(name)}")', "cgroups(7)")
        os.makedirs(self.path(name), exist_ok=True)

    def check_delegated(self, name, r):
        """A limit whose controller the container's cgroup does not get
        fails with one line naming the controller."""
        enabled = {c.lstrip("+") for c in
                   _read(os.path.join(os.path.dirname(self.path(name)),
                                      "cgroup.subtree_control")).split()}
        for attr, controller, flag in self.NEEDS:
            if getattr(r, attr) is not None and controller not in enabled:
                offered = _read(os.path.join(self.root, "cgroup.controllers")) or "none"
                raise OSError(f"{flag} needs the cgroup v2 {controller} controller, which "
                              f"{self.root} does not delegate to minirun (cgroup.controllers: "
                              f"{offered}): enable it there, or leave out {flag}")
        for attr, what in self.V1_ONLY:
            if getattr(r, attr) not in (None, False):
                raise OSError(f"{what}: cgroup v2 has no such setting: leave it out")

    def apply(self, name, r):
        self.check_delegated(name, r)
        p = self.path(name)
        if r.memory is not None:
            _write(f"{p}/memory.max", r.memory)
            # v2 counts swap apart: memory-swap is memory+swap, as in Docker
            swap = 0 if r.memory_swap is None else (-1 if r.memory_swap == -1 else r.memory_swap - r.memory)
            if os.path.exists(f"{p}/memory.swap.max"):
                _write(f"{p}/memory.swap.max", "max" if swap == -1 else swap)
        if r.cpu_quota is not None:
            _write(f"{p}/cpu.max", f"{r.cpu_quota} {r.cpu_period}")
        if r.cpu_shares is not None:
            _write(f"{p}/cpu.weight", shares_to_weight(r.cpu_shares))
        if r.memory_reservation is not None:
            _write(f"{p}/memory.low", r.memory_reservation)
        if r.cpuset_cpus is not None:
            _write(f"{p}/cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems is not None:
            _write(f"{p}/cpuset.mems", r.cpuset_mems)
        if r.pids_limit is not None:
            _write(f"{p}/pids.max", "max" if r.pids_limit <= 0 else r.pids_limit)
        if r.blkio_weight is not None:
            _write(f"{p}/io.weight", f"default {blkio_to_io_weight(r.blkio_weight)}")
        for major, minor, weight in r.blkio_weight_device or ():
            _write(f"{p}/io.weight", f"{major}:{minor} {blkio_to_io_weight(weight)}")
        for which, major, minor, rate in r.blkio_throttle or ():
            _write(f"{p}/io.max", f"{major}:{minor} {self.IO_MAX_KEYS[which]}={rate}")
        if r.devices is not None:
            # v2 has no devices controller: an eBPF program decides instead.
            from minirun.linux import devicefilter
            devicefilter.attach(p, r.devices)

    def add(self, name, pid):
        _attach([f"{self.path(name)}/cgroup.procs"], pid)

    def own_procs(self):
        """The cgroup.procs file of this process's own cgroup."""
        own = _own_cgroup("")
        return None if own is None else os.path.join(self.root, own, "cgroup.procs")

    def pids(self, name):
        return [int(x) for x in _read(f"{self.path(name)}/cgroup.procs").split()]

    def oom_killed(self, name):
        return _keyed(_read(f"{self.path(name)}/memory.events")).get("oom_kill", 0) > 0

    def stats(self, name):
        p = self.path(name)
        limit = _read(f"{p}/memory.max", "max")
        return {"cpu_ns": _keyed(_read(f"{p}/cpu.stat")).get("usage_usec", 0) * 1000,
                "memory": int(_read(f"{p}/memory.current", "0") or 0),
                "memory_limit": None if limit in ("max", "") else int(limit),
                "pids": int(_read(f"{p}/pids.current", "0") or 0)}

    def exists(self, name):
        return os.path.isdir(self.path(name))

    def destroy(self, name):
        """Kill what is left in the cgroup and remove it (and the parent if empty)."""
        p = self.path(name)
        if not os.path.isdir(p):
            return
        explain.step(f'rmdir("{p}")', "cgroups(7)")
        self.thaw(name)                 # a frozen process cannot die of SIGKILL
        _rmdir_retrying(p, lambda: self.pids(name))
        _remove_parent(name, p)

    def freeze(self, name):
        """Stop every process of the cgroup where it stands — cgroup.freeze."""
        _write(f"{self.path(name)}/cgroup.freeze", 1)
        for _ in range(500):
            if _keyed(_read(f"{self.path(name)}/cgroup.events")).get("frozen") == 1:
                return
            time.sleep(0.01)

    def thaw(self, name):
        if self.frozen(name):
            _write(f"{self.path(name)}/cgroup.freeze", 0)

    def frozen(self, name):
        return _read(f"{self.path(name)}/cgroup.freeze", "0") == "1"


class CgroupV1:
    version = 1
    CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer")

    def __init__(self, mounts):
        """`mounts`: controller → where its hierarchy is mounted."""
        self.mounts = {c: m for c, m in mounts.items() if c in self.CONTROLLERS}

    def path(self, name, controller="memory"):
        return os.path.join(self.mounts[controller], relative(name))

    def _dirs(self, name):
        """One directory per hierarchy (co-mounted controllers share one)."""
        return sorted({self.path(name, c) for c in self.mounts})

    def create(self, name):
        for c in self.mounts:
            d = self.path(name, c)
            if not os.path.isdir(d):
                explain.step(f'mkdir("{d}")', "cgroups(7)")
                os.makedirs(d, exist_ok=True)
        if "cpuset" in self.mounts:
            # a new cpuset cgroup starts with no CPUs and no memory nodes
            level = self.mounts["cpuset"]
            for part in relative(name).split("/"):
                level = os.path.join(level, part)
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not _read(os.path.join(level, f)):
                        _write(os.path.join(level, f), _read(os.path.join(os.path.dirname(level), f)))

    def _set(self, controller, name, filename, value):
        if controller not in self.mounts:
            raise OSError(f"the {controller} controller is not mounted on this host")
        _write(os.path.join(self.path(name, controller), filename), value)

    def apply(self, name, r):
        if r.memory is not None:
            self._set("memory", name, "memory.limit_in_bytes", r.memory)
            memsw = os.path.join(self.path(name, "memory"), "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                swap = r.memory if r.memory_swap is None else r.memory_swap
                self._set("memory", name, "memory.memsw.limit_in_bytes", swap)
        for attr, filename in (("memory_reservation", "memory.soft_limit_in_bytes"),
                               ("memory_swappiness", "memory.swappiness"),
                               ("kernel_tcp", "memory.kmem.tcp.limit_in_bytes")):
            if getattr(r, attr) is not None:
                self._set("memory", name, filename, getattr(r, attr))
        if r.oom_kill_disable:
            self._set("memory", name, "memory.oom_control", 1)
        if r.cpu_quota is not None:
            self._set("cpu", name, "cpu.cfs_period_us", r.cpu_period)
            self._set("cpu", name, "cpu.cfs_quota_us", r.cpu_quota)
        if r.cpu_shares is not None:
            self._set("cpu", name, "cpu.shares", r.cpu_shares)
        if r.cpu_rt_period is not None:
            self._set("cpu", name, "cpu.rt_period_us", r.cpu_rt_period)
        if r.cpu_rt_runtime is not None:
            self._set("cpu", name, "cpu.rt_runtime_us", r.cpu_rt_runtime)
        if r.cpuset_cpus is not None:
            self._set("cpuset", name, "cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems is not None:
            self._set("cpuset", name, "cpuset.mems", r.cpuset_mems)
        if r.pids_limit is not None:
            self._set("pids", name, "pids.max", "max" if r.pids_limit <= 0 else r.pids_limit)
        if r.blkio_weight is not None:
            if not os.path.exists(os.path.join(self.path(name, "blkio"), "blkio.weight")):
                raise OSError("--blkio-weight: this host's I/O scheduler has no blkio.weight")
            self._set("blkio", name, "blkio.weight", r.blkio_weight)
        for major, minor, weight in r.blkio_weight_device or ():
            if not os.path.exists(os.path.join(self.path(name, "blkio"), "blkio.weight_device")):
                raise OSError("blockIO.weightDevice: this host's I/O scheduler has no "
                              "blkio.weight_device")
            self._set("blkio", name, "blkio.weight_device", f"{major}:{minor} {weight}")
        for which, major, minor, rate in r.blkio_throttle or ():
            self._set("blkio", name, f"blkio.throttle.{which}_device", f"{major}:{minor} {rate}")
        if r.devices is not None:
            # Deny everything, then allow the list, rule by rule.
            self._set("devices", name, "devices.deny", "a")
            for rule in r.devices:
                self._set("devices", name, "devices.allow", str(rule))

    def add(self, name, pid):
        _attach([os.path.join(d, "cgroup.procs") for d in self._dirs(name)], pid)

    def _one_hierarchy(self):
        """A controller whose hierarchy lists every process (pids if mounted)."""
        return "pids" if "pids" in self.mounts else next(iter(self.mounts))

    def own_procs(self):
        """The cgroup.procs file of this process's own cgroup (in one hierarchy)."""
        c = self._one_hierarchy()
        own = _own_cgroup(c)
        return None if own is None else os.path.join(self.mounts[c], own, "cgroup.procs")

    def pids(self, name):
        c = self._one_hierarchy()
        return [int(x) for x in _read(os.path.join(self.path(name, c), "cgroup.procs")).split()]

    def oom_killed(self, name):
        text = _read(os.path.join(self.path(name, "memory"), "memory.oom_control"))
        return _keyed(text).get("oom_kill", 0) > 0

    def stats(self, name):
        mem = self.path(name, "memory")
        limit = int(_read(os.path.join(mem, "memory.limit_in_bytes"), "0") or 0)
        cpu = self.path(name, "cpuacct") if "cpuacct" in self.mounts else None
        return {"cpu_ns": int(_read(os.path.join(cpu, "cpuacct.usage"), "0") or 0) if cpu else 0,
                "memory": int(_read(os.path.join(mem, "memory.usage_in_bytes"), "0") or 0),
                "memory_limit": None if limit >= 1 << 62 else limit,
                "pids": int(_read(os.path.join(self.path(name, "pids"), "pids.current"), "0") or 0)
                if "pids" in self.mounts else len(self.pids(name))}

    def exists(self, name):
        return any(os.path.isdir(d) for d in self._dirs(name))

    def destroy(self, name):
        """Kill what is left in the cgroup and remove it (and the parent if empty)."""
        if "freezer" in self.mounts and os.path.isdir(self.path(name, "freezer")):
            self.thaw(name)             # a frozen process cannot die of SIGKILL
        for d in self._dirs(name):
            if os.path.isdir(d):
                explain.step(f'rmdir("{d}")', "cgroups(7)")
                _rmdir_retrying(d, lambda: [int(x) for x in _read(os.path.join(d, "cgroup.procs")).split()])
            _remove_parent(name, d)

    def _freezer(self, name):
        if "freezer" not in self.mounts:
            raise OSError("the freezer controller is not mounted on this host")
        return os.path.join(self.path(name, "freezer"), "freezer.state")

    def freeze(self, name):
        """Stop every process of the cgroup where it stands — freezer.state
        FROZEN; the kernel says FREEZING until the last one has stopped."""
        _write(self._freezer(name), "FROZEN")
        for _ in range(500):
            if _read(self._freezer(name)) == "FROZEN":
                return
            time.sleep(0.01)

    def thaw(self, name):
        if self.frozen(name):
            _write(self._freezer(name), "THAWED")

    def frozen(self, name):
        return "freezer" in self.mounts and _read(self._freezer(name)) in ("FROZEN", "FREEZING")


def _kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def detect(mountinfo="/proc/self/mountinfo"):
    """Probe the host's mounts: v1 wherever v1 controllers are mounted, else v2."""
    v1, v2 = {}, None
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            mountpoint = fields[4]
            if fstype == "cgroup":
                for opt in options:
                    if opt in CgroupV1.CONTROLLERS:
                        v1.setdefault(opt, mountpoint)   # the host's, listed before any
                                                         # a container mounted in its table
            elif fstype == "cgroup2" and v2 is None:
                v2 = mountpoint
    if v1.get("memory"):
        return CgroupV1(v1)
    if v2:
        return CgroupV2(v2)
    return None
