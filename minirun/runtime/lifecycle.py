"""The container lifecycle, Docker's verbs on the one start sequence:

    create   image + options → a bundle on disk (state `created`), nothing runs
    start    attached: this process supervises the container until it exits;
             detached: a monitor process (monitor.py) does, and outlives us
    stop / kill / wait / rm / prune, and the views: ps, inspect, logs, top, stats

The monitor imports this module too, so what only `create` needs (image
loading, flag checking) is imported inside it: a monitor stays small.
"""
import json
import os
import re
import signal
import time

from minirun.errors import ContainerNotFound, MinirunError, UsageError
from minirun.linux.process import process_start_time, wait_for_end
from minirun.runtime import container, etcfiles, state as statefile


def cgroup_driver():
    from minirun.linux import cgroups
    return cgroups.detect()


# --- finding containers ---------------------------------------------------------

def resolve(store, ref, damaged_ok=False):
    """A full id, a name or a unique id prefix → (id, bundle, state). An
    empty reference (an unset shell variable, say) matches nothing. A
    damaged container can only be looked at and removed."""
    if not ref:
        raise ContainerNotFound("no such container: '' (an empty name or id)")
    found = container.one_container(store, ref) if re.fullmatch(r"[0-9a-f]{64}", ref) else None
    candidates = [found] if found else container.all_containers(store)   # a whole id: no walk
    matches = []
    for cid, bundle, st in candidates:
        if ref in (cid, st.get("name")):
            matches = [(cid, bundle, st)]
            break
        if cid.startswith(ref):
            matches.append((cid, bundle, st))
    if len(matches) == 1:
        cid, _, st = matches[0]
        if st["status"] == "damaged" and not damaged_ok:
            raise MinirunError(f"container {cid[:12]} is damaged ({st['damage']}): "
                               f"remove it with rm -f")
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"multiple containers match the prefix {ref!r}: give more characters")
    raise ContainerNotFound(f"no such container: {ref}")


# --- create and start -------------------------------------------------------------

def check_input_is_a_terminal(tty, interactive):
    """-i -t relays our stdin into the container's terminal: it must be a
    terminal too. A pipe there would fill the pty's line buffer (a long line
    with no newline) and wedge both sides; Docker refuses it the same way."""
    if tty and interactive and not os.isatty(0):
        raise UsageError("the input device is not a TTY: drop -t to pipe input into a container")


def create(store, image_ref, opts):
    """Prepare a container from RunOptions; returns its id. Every check
    happens before the disk changes."""
    from minirun.runtime.options import build_spec, parse_add_host, parse_network_requests
    from minirun.image.distribution import obtain
    from minirun.linux.cgroups import attach_early
    attach_early(cgroup_driver())      # start will find the kernel's cgroup lock warm
    image = obtain(store, image_ref, opts.pull)
    cid = container.new_id()
    spec = build_spec(opts, image, cid, os.path.join(store.containers, cid), store.root)
    ports, dns = parse_network_requests(opts)
    network = _network_of(store, spec)
    extra_hosts = [parse_add_host(h, network and network.gateway) for h in opts.add_hosts]
    with store.lock():       # the sweep's walk of the store also gives the names in use
        taken = {st.get("name") for _, _, st in container.sweep_orphans(store)}
        if spec.name and spec.name in taken:
            raise UsageError(f'the container name "{spec.name}" is already in use: '
                             f"remove that container or choose another name")
        if not spec.name:
            from minirun.runtime import names
            spec.name = names.generate(taken)
        if network is not None:
            from minirun.network.connect import connect
            connect(store.root, spec, ports, extra_hosts, running=lambda c: running(store.root, c))
        try:
            container.create_bundle(store, spec, {
                "name": spec.name, "image": image_ref, "image_id": image.id,
                "command": spec.process.args, "auto_remove": opts.rm or bool(spec.skip)})
        except BaseException:
            container.remove_bundle(spec.bundle, spec)
            raise
    _write_etc_files(store, spec, extra_hosts, dns)
    container.give_to_container_root(spec)
    return cid


def _network_of(store, spec):
    """The bridge network the container joins, or None; container:REF is
    resolved here to the other container's id and /etc files."""
    if spec.network in ("none", "host"):
        return None
    if spec.network.startswith("container:"):
        other, bundle, _ = resolve(store, spec.network.partition(":")[2])
        spec.network = "container:" + other
        spec.hostname = container.load_spec(bundle).hostname
        spec.etc_files = etcfiles.etc_file_paths(bundle)
        return None
    from minirun.network.networks import Networks
    return Networks(store.root).get(spec.network)


def _write_etc_files(store, spec, extra_hosts, dns):
    if spec.network.startswith("container:"):
        return                     # it uses the other container's files
    if spec.attachment is not None:
        from minirun.network.connect import refresh_hosts
        etcfiles.write_etc_files(spec.bundle, spec.hostname, dns=dns)
        refresh_hosts(store.root, spec.attachment.network, newcomer=spec.id)
        return
    lines = [f"{ip}\t{name}" for name, ip in extra_hosts]
    if spec.network == "host":
        lines += etcfiles.host_hosts_lines()
    etcfiles.write_etc_files(spec.bundle, spec.hostname, lines, dns,
                             keep_loopback_dns=spec.network == "host")


def running(store_root, cid):
    try:
        st = statefile.read(os.path.join(store_root, "containers", cid))
    except (OSError, ValueError):
        return False
    return statefile.status(st)[0] == "running"


def prepare_start(store_root, spec):
    """Resolve what can change between create and start: the namespace of
    the container whose network this one shares must be joined afresh, and
    its ports may have been taken while it was stopped."""
    if spec.attachment is not None and spec.attachment.ports:
        from minirun.network.networks import Networks, check_ports_free
        nets = Networks(store_root)
        with nets.lock():
            check_ports_free(spec.attachment.ports,
                             nets.published(lambda c: running(store_root, c), but=spec.id),
                             probe=False)
    if spec.network.startswith("container:"):
        other = spec.network.partition(":")[2]
        bundle = os.path.join(store_root, "containers", other)
        try:
            st = statefile.read(bundle)
        except FileNotFoundError:
            raise MinirunError(f"cannot join the network of container {other[:12]}: "
                               f"it was removed") from None
        if statefile.status(st)[0] != "running":
            raise MinirunError(f"cannot join the network of container {other[:12]}: "
                               f"it is not running")
        spec.namespace_paths = {"net": f"/proc/{st['pid']}/ns/net"}


def _claim(bundle, cid):
    """Mark that this process now supervises the container; refuse if it runs."""
    with statefile.locked(bundle):
        st = statefile.read(bundle)
        if statefile.status(st)[0] == "running":
            raise UsageError(f"container {cid[:12]} is already running")
        pid = os.getpid()
        st.update(owner_pid=pid, owner_start=process_start_time(pid), status="starting",
                  pid=None, exit_code=None, oom_killed=False)
        statefile.write_new(bundle, st)


def record_running(bundle, running):
    statefile.update(bundle, status="running", pid=running.pid,
                     pid_start=process_start_time(running.pid), started_at=statefile.now())


def record_exit(bundle, spec, code, cgroup):
    from minirun.runtime.start import finish
    oom = finish(spec, cgroup)
    container.release_ports(spec)
    st = statefile.update(bundle, status="exited", exit_code=code, oom_killed=oom,
                          finished_at=statefile.now())
    if st.get("auto_remove"):
        container.remove_bundle(bundle)


def start_attached(store, cid):
    """Run the container in the foreground; returns its exit status."""
    from minirun.runtime.start import (
        attached_stdio, close_all, hold_signals, launch, release_signals, supervise)
    bundle = os.path.join(store.containers, cid)
    spec = container.load_spec(bundle)
    check_input_is_a_terminal(spec.process.tty, spec.process.stdin)
    try:
        prepare_start(store.root, spec)
    except MinirunError:
        _start_failed(bundle)        # a --rm container that could not start goes
        raise
    _claim(bundle, cid)
    cgroup = cgroup_driver()
    theirs, ours = attached_stdio(spec.process)
    hold_signals()
    try:
        running = launch(spec, cgroup, theirs)
    except BaseException:
        release_signals()
        close_all(ours or ())
        _start_failed(bundle)
        raise
    finally:
        close_all(theirs)
    running.pipes = ours
    record_running(bundle, running)
    code = supervise(running, relay_stdin=spec.process.stdin)
    record_exit(bundle, spec, code, cgroup)
    return code


def _start_failed(bundle):
    st = statefile.update(bundle, status="created")
    if st.get("auto_remove"):
        container.remove_bundle(bundle)


class Monitor:
    """A monitor process (runtime/monitor.py) for a detached container,
    started before the container exists: its Python and its imports (~35 ms
    here) get ready on another CPU while `run -d` creates the container.
    start(cid) hands the container over and returns once it runs; cancel()
    lets the monitor go unused (it exits on end-of-file)."""

    # -c, not -m: runpy's module search would cost each start ~4 ms. The
    # module's name stays on the command line (argv[1]), for ps and pgrep.
    MAIN = "import sys; from minirun.runtime import monitor; monitor.serve(*sys.argv[2:])"

    def __init__(self, store):
        import sys
        self.store = store
        given, self.hand = os.pipe()        # the container's id, when it exists
        self.report, told = os.pipe()       # "ok", or the error that stopped it
        os.set_inheritable(given, True)
        os.set_inheritable(told, True)
        # posix_spawn(3), not subprocess (~2 ms of imports): stdio on
        # /dev/null, a session of its own; the monitor closes the rest of
        # what it inherits first thing (monitor.serve).
        devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
        os.posix_spawn(sys.executable, [sys.executable, "-c", self.MAIN, "minirun.runtime.monitor",
                                        store.root, str(given), str(told)],
                       os.environ, file_actions=devnull, setsid=True)
        os.close(given)
        os.close(told)

    def start(self, cid):
        bundle = os.path.join(self.store.containers, cid)
        try:
            st = statefile.read(bundle)
            if statefile.status(st)[0] == "running":
                raise UsageError(f"container {cid[:12]} is already running")
            container.load_spec(bundle)   # a damaged config is said here, not by a dying monitor
        except BaseException:
            self.cancel()
            raise
        os.write(self.hand, cid.encode() + b"\n")
        os.close(self.hand)
        with os.fdopen(self.report) as f:
            report = f.readline()
        if report.startswith("ok"):
            return
        if report.startswith("error "):
            _, code, message = report.split(" ", 2)
            from minirun.errors import ExecError
            raise ExecError(message.strip(), int(code)) if code in ("126", "127") \
                else MinirunError(message.strip())
        raise MinirunError(f"the monitor of container {cid[:12]} died before starting it")

    def cancel(self):
        os.close(self.hand)
        os.close(self.report)


def start_detached(store, cid):
    """Hand the container to a monitor process and return once it runs."""
    Monitor(store).start(cid)


# --- signals and endings ---------------------------------------------------------------

def _running_pid(cid, st):
    if statefile.status(st)[0] != "running":
        raise UsageError(f"container {cid[:12]} is not running")
    return st["pid"]


def kill(store, ref, sig=signal.SIGKILL):
    cid, _, st = resolve(store, ref)
    os.kill(_running_pid(cid, st), sig)
    return cid


def wait(store, ref, timeout=None):
    """Block until the container has exited and its end is recorded; its exit status."""
    cid, bundle, _ = resolve(store, ref)
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            st = statefile.read(bundle)
        except FileNotFoundError:          # removed (--rm) as it ended
            return None
        status, code = statefile.status(st)
        if status == "exited" and (st["status"] == "exited" or not statefile.alive(
                st.get("owner_pid"), st.get("owner_start"))):
            return code
        if status == "created":
            raise UsageError(f"container {cid[:12]} has not been started")
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None
        # Whoever started it (the monitor, or `run` itself) records the end
        # and then exits: sleep until that exit, else poll.
        if not wait_for_end(st.get("owner_pid"), st.get("owner_start"), remaining):
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def stop(store, ref, timeout=10):
    """The image's stop signal (SIGTERM by default), then SIGKILL after `timeout` s."""
    cid, bundle, st = resolve(store, ref)
    if statefile.status(st)[0] != "running":
        return cid
    spec = container.load_spec(bundle)
    os.kill(st["pid"], parse_signal(spec.stop_signal))
    if wait(store, cid, timeout=timeout) is None and statefile.alive(st["pid"], st["pid_start"]):
        os.kill(st["pid"], signal.SIGKILL)
        wait(store, cid)
    return cid


def parse_signal(value):
    """'TERM', 'SIGTERM', '15' → 15."""
    value = str(value).upper()
    if value.isdigit():
        return int(value)
    name = value if value.startswith("SIG") else "SIG" + value
    try:
        return signal.Signals[name].value
    except KeyError:
        raise UsageError(f"invalid signal: {value}") from None


def remove(store, ref, force=False):
    cid, bundle, st = resolve(store, ref, damaged_ok=True)
    status = statefile.status(st)[0]
    cgroup = cgroup_driver()
    if status == "damaged":
        # Its state cannot say what runs; its cgroup can (destroy kills it all).
        if cgroup is not None and cgroup.exists(cid) and cgroup.pids(cid) and not force:
            raise UsageError(f"container {cid[:12]} is damaged and may still run: use rm -f")
    elif status == "running":
        if not force:
            raise UsageError(f"cannot remove running container {cid[:12]}: stop it first or use rm -f")
        os.kill(st["pid"], signal.SIGKILL)
        wait(store, cid, timeout=10)
    if cgroup is not None:
        cgroup.destroy(cid)
    container.remove_bundle(bundle)
    return cid


def prune(store):
    return [remove(store, cid, force=st["status"] == "damaged")
            for cid, _, st in container.sweep_orphans(store)
            if statefile.status(st)[0] in ("exited", "created", "damaged")]


# --- views ----------------------------------------------------------------------

def ps_rows(store, show_all=False, truncate=True):
    """(id, image, command, created, status, names) as `docker ps` shows them."""
    rows = []
    for cid, _, st in reversed(container.sweep_orphans(store)):
        status, code = statefile.status(st)
        if status != "running" and not show_all:
            continue
        if status == "running":
            text = f"Up {statefile.ago(st.get('started_at') or st['created'])}"
        elif status == "exited":
            text = f"Exited ({code}) {statefile.ago(st.get('finished_at') or st['created'])} ago"
        elif status == "damaged":
            text = f"Damaged ({st['damage']})"
        else:
            text = "Created"
        command = " ".join(st.get("command") or [])
        rows.append((cid[:12] if truncate else cid, st.get("image", ""),
                     f'"{command[:20] if truncate else command}"',
                     f"{statefile.ago(st['created'])} ago", text, st.get("name", "")))
    return rows


def inspect(store, ref):
    cid, bundle, st = resolve(store, ref, damaged_ok=True)
    status, code = statefile.status(st)
    if status == "damaged":
        return {"Id": cid, "State": {"Status": "damaged", "Error": st["damage"]}}
    spec = container.load_spec(bundle)
    return {
        "Id": cid,
        "Name": "/" + st.get("name", ""),
        "Created": statefile.iso(st["created"]),
        "Path": spec.process.args[0],
        "Args": spec.process.args[1:],
        "State": {"Status": status, "Running": status == "running",
                  "Pid": st.get("pid") if status == "running" else 0,
                  "ExitCode": code or 0, "OOMKilled": bool(st.get("oom_killed")),
                  "StartedAt": statefile.iso(st.get("started_at")),
                  "FinishedAt": statefile.iso(st.get("finished_at"))},
        "Image": st.get("image_id", ""),
        "LogPath": os.path.join(bundle, "container.log"),
        "Config": {"Hostname": spec.hostname, "User": f"{spec.process.user.uid}:{spec.process.user.gid}",
                   "Tty": spec.process.tty, "OpenStdin": spec.process.stdin,
                   "Env": [f"{k}={v}" for k, v in spec.process.env.items()],
                   "Cmd": spec.process.args, "Image": st.get("image", ""),
                   "WorkingDir": spec.process.cwd, "StopSignal": spec.stop_signal},
        "HostConfig": {"Memory": spec.resources.memory or 0,
                       "MemorySwap": spec.resources.memory_swap or 0,
                       "NanoCpus": (spec.resources.cpu_quota or 0) * 1_000_000_000 // spec.resources.cpu_period,
                       "CpuShares": spec.resources.cpu_shares or 0,
                       "CpusetCpus": spec.resources.cpuset_cpus or "",
                       "PidsLimit": spec.resources.pids_limit,
                       "BlkioWeight": spec.resources.blkio_weight or 0,
                       "ReadonlyRootfs": spec.rootfs.readonly, "Privileged": spec.privileged,
                       "CapAdd": None, "AutoRemove": bool(st.get("auto_remove")),
                       "SecurityOpt": _security_opt(spec),
                       "Seccomp": {"Profile": spec.seccomp.profile, "Rules": spec.seccomp.rules}
                       if spec.seccomp else {"Profile": "unconfined"}},
        "Mounts": [{"Type": m.type, "Source": m.source, "Destination": m.target, "RW": not m.readonly}
                   for m in spec.mounts],
        "NetworkSettings": _network_settings(spec),
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(spec.rootfs.layers[::-1]), "UpperDir": spec.rootfs.upperdir,
            "WorkDir": spec.rootfs.workdir}},
    }


def _security_opt(spec):
    """As Docker shows it: nothing for the default profile."""
    if spec.seccomp is None:
        return ["seccomp=unconfined"] if not spec.privileged else None
    return None if spec.seccomp.profile == "default" else [f"seccomp={spec.seccomp.profile}"]


def ports(store, ref):
    _, bundle, _ = resolve(store, ref)
    spec = container.load_spec(bundle)
    return spec.attachment.ports if spec.attachment else []


def _network_settings(spec):
    a = spec.attachment
    if a is None:
        return {"Networks": {spec.network: {}}, "Ports": {}}
    ports = {}
    for p in a.ports:
        ports.setdefault(f"{p.container_port}/{p.proto}", []).append(
            {"HostIp": p.host_ip, "HostPort": str(p.host_port)})
    return {"IPAddress": a.address, "Gateway": a.gateway, "IPPrefixLen": a.prefixlen,
            "Ports": ports, "Networks": {a.network: {"IPAddress": a.address, "Gateway": a.gateway,
                                                      "IPPrefixLen": a.prefixlen}}}


def log_entries(store, ref, follow=False, tail=None):
    """Yield (stream, text) from the container's log; with follow, until it
    exits. A line still being written is waited for (follow) or left out;
    a damaged line (a truncated log) is skipped."""
    cid, bundle, _ = resolve(store, ref)
    path = os.path.join(bundle, "container.log")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        lines, partial = _complete_lines(f.read())
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        yield from _log_records(lines)
        while follow:
            data = f.read()
            if data:
                lines, partial = _complete_lines(partial + data)
                yield from _log_records(lines)
                continue
            try:
                st = statefile.read(bundle)
            except (OSError, ValueError):
                return
            if statefile.status(st)[0] != "running" and st["status"] != "starting":
                lines, _ = _complete_lines(partial + f.read())
                yield from _log_records(lines)
                return
            time.sleep(0.05)


def _complete_lines(data):
    """(the whole lines in `data`, what follows the last newline)."""
    *lines, rest = data.split(b"\n")
    return lines, rest


def _log_records(lines):
    for line in lines:
        try:
            entry = json.loads(line)
            yield entry["stream"], entry["log"]
        except (ValueError, KeyError, TypeError):
            continue


def top(store, ref):
    """(pid, user, time, command) of each process in the container's cgroup."""
    cid, _, st = resolve(store, ref)
    _running_pid(cid, st)
    rows = []
    for pid in sorted(cgroup_driver().pids(cid)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        ticks = (int(fields[11]) + int(fields[12])) // os.sysconf("SC_CLK_TCK")
        rows.append((pid, uid, f"{ticks // 3600:02d}:{ticks // 60 % 60:02d}:{ticks % 60:02d}", cmd))
    return rows


def stats(store, refs=(), interval=0.5):
    """(id, name, cpu %, memory, limit, pids) of running containers, sampled over `interval`."""
    targets = [resolve(store, r) for r in refs] if refs else [
        c for c in container.all_containers(store) if statefile.status(c[2])[0] == "running"]
    cgroup = cgroup_driver()
    first = {cid: cgroup.stats(cid) for cid, _, _ in targets}
    t0 = time.monotonic()
    time.sleep(interval)
    elapsed = time.monotonic() - t0
    rows = []
    for cid, _, st in targets:
        s = cgroup.stats(cid)
        cpu = (s["cpu_ns"] - first[cid]["cpu_ns"]) / (elapsed * 1e9) * 100
        rows.append((cid[:12], st.get("name", ""), cpu, s["memory"], s["memory_limit"], s["pids"]))
    return rows
