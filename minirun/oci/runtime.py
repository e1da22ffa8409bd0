"""The runc verbs over OCI bundles: what containerd's shim, conmon and the
OCI conformance suite call. Each container has a directory in the state
root (--root, default /run/minirun-oci):

    <root>/<id>/state.json    what `create` recorded: pid, bundle, spec...
    <root>/<id>/exec.fifo     exists from `create` until `start` opens it
    <root>/<id>/*.bpf         the compiled seccomp filter, if any

No minirun process stays with the container: `create` starts it with the
one start sequence (runtime/start.py, handed off) and exits, leaving its
PID 1 blocked on exec.fifo; the engine, a child subreaper, reaps it. The
status is read from the kernel each time:

    created   exec.fifo is there and the process lives
    running   the process lives (paused: its cgroup is frozen)
    stopped   it is gone
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import time

from minirun import record
from minirun.errors import ContainerNotFound, MinirunError, UsageError
from minirun.linux import fs
from minirun.linux.files import write_atomic
from minirun.linux.process import process_start_time
from minirun.oci import config as bundles
from minirun.runtime import hooks, sync
from minirun.runtime.spec import spec_from_dict, spec_to_dict

DEFAULT_ROOT = "/run/minirun-oci"
VALID_ID = re.compile(r"[\w+.-]+$")
OCI_VERSION = "1.2.0"


def cgroup_driver():
    from minirun.linux import cgroups
    return cgroups.detect()


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


class Runtime:
    def __init__(self, root=DEFAULT_ROOT, systemd_cgroup=False):
        self.root = os.path.abspath(root)
        self.systemd_cgroup = systemd_cgroup

    # --- the state directory ------------------------------------------------------

    def dir(self, cid):
        if not cid or not VALID_ID.match(cid):
            raise UsageError(f"invalid container id {cid!r}: use letters, digits, _ + . -")
        return os.path.join(self.root, cid)

    def load(self, cid):
        """The record `create` wrote; one line if there is none."""
        try:
            with open(os.path.join(self.dir(cid), "state.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise ContainerNotFound(f"container {cid} does not exist") from None
        except (OSError, ValueError) as e:
            raise MinirunError(f"container {cid}: state.json unreadable ({e}): "
                               f"delete --force it") from None

    def status(self, rec):
        if process_start_time(rec["pid"]) != rec["start_time"]:
            return "stopped"
        if os.path.exists(os.path.join(self.dir(rec["id"]), "exec.fifo")):
            return "created"
        driver = cgroup_driver()
        if driver is not None and driver.frozen(rec["cgroup"]):
            return "paused"
        return "running"

    def state(self, cid, rec=None):
        """The OCI state document (runtime-spec runtime.md#state)."""
        rec = rec or self.load(cid)
        status = self.status(rec)
        return {"ociVersion": rec["ociVersion"], "id": cid, "status": status,
                "pid": rec["pid"] if status != "stopped" else 0, "bundle": rec["bundle"],
                "rootfs": rec["rootfs"], "created": rec["created"], "owner": "",
                "annotations": rec["annotations"]}

    def list(self):
        if not os.path.isdir(self.root):
            return []
        out = []
        for cid in sorted(os.listdir(self.root)):
            try:
                out.append(self.state(cid))
            except MinirunError:
                continue                    # being created or deleted meanwhile
        return out

    # --- create and start ---------------------------------------------------------

    def cgroup_path(self, path, cid):
        """cgroupsPath as a cgroupfs path. With --systemd-cgroup it is
        slice:prefix:name; minirun drives cgroupfs itself, so this works
        only where systemd does not run (it would own the tree)."""
        if self.systemd_cgroup:
            if os.path.isdir("/run/systemd/system"):
                raise UsageError("--systemd-cgroup: minirun manages cgroups through cgroupfs "
                                 "and this host runs systemd: use the cgroupfs manager")
            if path.count(":") == 2:
                slice_, prefix, name = path.split(":")
                return f"/{slice_ or 'system.slice'}/{prefix}-{name}.scope"
        if not path:
            return ""                       # minirun/<id>
        return path if path.startswith("/") else "/" + path

    def create(self, cid, bundle, pid_file=None, console_socket=None, no_pivot=False,
               preserve_fds=0):
        """Start the container's process up to its execve and leave it
        waiting for `start`. Everything is checked before the state root
        changes; a failure leaves nothing behind in it."""
        from minirun.linux.cgroups import attach_early
        from minirun.runtime.start import Handoff, launch
        cgroup = cgroup_driver()
        attach_early(cgroup)          # launch will find the kernel's cgroup lock warm
        d = self.dir(cid)
        bundle = os.path.abspath(bundle)
        config = bundles.read_config(bundle)
        spec, seccomp, annotations = bundles.translate(config, bundle, cid, d)
        spec.cgroup_path = self.cgroup_path(spec.cgroup_path, cid)
        if no_pivot and "pivot-root" not in spec.skip:
            spec.skip = (*spec.skip, "pivot-root")
        if spec.process.tty and console_socket is None:
            raise UsageError("process.terminal is true: give --console-socket for its pty")
        check_capabilities_held(spec.process)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(d, 0o711)
        except FileExistsError:
            raise UsageError(f"container with id {cid} already exists") from None
        fds = []
        try:
            if seccomp is not None:
                spec.seccomp = compile_seccomp(seccomp, spec, d)
            fifo = os.path.join(d, "exec.fifo")
            os.mkfifo(fifo)
            os.chmod(fifo, 0o622)       # past the umask: a remapped root opens it as "others"
            fds.append(os.open(fifo, os.O_PATH | os.O_CLOEXEC))
            console = connect(console_socket) if console_socket else None
            if console is not None:
                fds.append(console)
            state = {"ociVersion": config["ociVersion"], "id": cid, "status": "creating",
                     "bundle": bundle, "annotations": annotations}
            handoff = Handoff(fds[0], console, preserve_fds, state)
            running = launch(spec, cgroup, (0, 1, 2), handoff)
            saved = {**state, "pid": running.pid, "start_time": process_start_time(running.pid),
                     "rootfs": spec.rootfs.mountpoint, "created": now_rfc3339(),
                     "cgroup": spec.cgroup, "spec": spec_to_dict(spec)}
            del saved["status"]
            write_atomic(os.path.join(d, "state.json"), json.dumps(saved))
            if pid_file:
                write_atomic(os.path.abspath(pid_file), str(running.pid))
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return running.pid

    def start(self, cid):
        """Run the prestart hooks, then open exec.fifo for reading: the
        process blocked opening it for writing goes on to its execve; its
        byte says it has. Returns the poststart hooks' warnings."""
        rec = self.load(cid)
        status = self.status(rec)
        if status != "created":
            raise UsageError(f"cannot start container {cid}: it is {status}, not created")
        spec = spec_from_dict(rec["spec"])
        if spec.hooks.prestart:
            try:
                hooks.run(spec.hooks.prestart, self.state(cid, rec), "prestart")
            except MinirunError:
                self.delete(cid, force=True)    # the spec: stop it, go on to delete
                raise
        fifo = os.path.join(self.dir(cid), "exec.fifo")
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            poll = select.poll()
            poll.register(fd, select.POLLIN)
            while not poll.poll(100):
                if process_start_time(rec["pid"]) != rec["start_time"]:
                    raise MinirunError(f"container {cid} exited before it could start")
            if os.read(fd, 1) != b"0":
                raise MinirunError(f"container {cid} failed before its program could start")
        finally:
            os.close(fd)
            os.unlink(fifo)
        if not spec.hooks.poststart:
            return []
        return hooks.run_warning(spec.hooks.poststart, self.state(cid, rec), "poststart")

    # --- signals, removal -----------------------------------------------------------

    def kill(self, cid, sig=signal.SIGTERM, all_processes=False):
        rec = self.load(cid)
        if self.status(rec) == "stopped":
            raise MinirunError(f"container {cid}: container not running")
        driver = cgroup_driver()
        pids = driver.pids(rec["cgroup"]) if all_processes and driver else [rec["pid"]]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def delete(self, cid, force=False):
        """Remove a stopped container: its cgroup, its state; then the
        poststop hooks. --force kills a created or running one first;
        forced, an unknown container is no error (as with runc: an engine
        cleaning up twice)."""
        try:
            rec = self.load(cid)
        except ContainerNotFound:
            if force:
                shutil.rmtree(self.dir(cid), ignore_errors=True)   # a create cut short
                return []
            raise
        status = self.status(rec)
        if status != "stopped" and not force:
            raise UsageError(f"cannot delete container {cid} that is {status}: stop it first "
                             f"or use --force")
        spec = spec_from_dict(rec["spec"])
        if not spec.has_own("mount"):
            fs.detach(spec.rootfs.mountpoint)   # its mounts were made in the host's table
        driver = cgroup_driver()
        if status != "stopped":
            if driver is not None:
                driver.thaw(rec["cgroup"])
            try:
                os.kill(rec["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        if driver is not None:
            driver.destroy(rec["cgroup"])   # kills what is left, waits till it is empty
        warnings = hooks.run_warning(spec.hooks.poststop, self.state(cid, rec), "poststop") \
            if spec.hooks.poststop else []
        shutil.rmtree(self.dir(cid), ignore_errors=True)
        return warnings

    # --- inside a running container -------------------------------------------------

    def exec(self, cid, process, detach=False, pid_file=None, console_socket=None,
             preserve_fds=0, no_new_privileges=None):
        """Run `process` (spec.Process) in the container: it joins the
        namespaces and cgroup of the container's PID 1, as `minirun exec`
        does. Detached, we return once it runs; else we wait for it and
        return its exit status."""
        from minirun.runtime.exec import fork_into_pid_namespace_of
        from minirun.runtime.start import Handoff, Running, kill_and_reap, supervise
        rec = self.load(cid)
        status = self.status(rec)
        if status not in ("running", "created"):
            raise UsageError(f"cannot exec in container {cid}: it is {status}")
        spec = spec_from_dict(rec["spec"])
        if no_new_privileges is not None:
            spec = record.replace(spec, no_new_privileges=no_new_privileges)
        if process.tty and console_socket is None and detach:
            raise UsageError("--tty with --detach needs --console-socket for the pty")
        check_capabilities_held(process)
        console = connect(console_socket) if console_socket else None
        handoff = Handoff(console=console, preserve_fds=preserve_fds) \
            if detach or console is not None or preserve_fds else None
        parent_end, child_end = sync.channel()
        try:
            child = fork_into_pid_namespace_of(rec["pid"], spec, process, cgroup_driver(),
                                               parent_end, child_end, (0, 1, 2), handoff)
        finally:
            child_end.close()
            if console is not None:
                os.close(console)
        try:
            to_us = process.tty and console is None
            master = sync.expect(parent_end, sync.PTY_MASTER) if to_us else None
            sync.expect_exec(parent_end)
        except BaseException:
            kill_and_reap(child)
            raise
        finally:
            parent_end.close()
        if pid_file:
            write_atomic(os.path.abspath(pid_file), str(child))
        if detach:
            return 0
        stdin = os.fstat(0).st_mode     # a pty relays only what can be polled: not a plain file
        relay = os.isatty(0) or stat.S_ISFIFO(stdin) or stat.S_ISSOCK(stdin)
        return supervise(Running(child, master), relay_stdin=relay)

    def pids(self, cid):
        rec = self.load(cid)
        driver = cgroup_driver()
        if driver is None:
            return [rec["pid"]] if self.status(rec) != "stopped" else []
        return sorted(driver.pids(rec["cgroup"]))

    def pause(self, cid):
        rec = self.load(cid)
        if self.status(rec) != "running":
            raise UsageError(f"cannot pause container {cid}: it is {self.status(rec)}")
        self._freezer(lambda d: d.freeze(rec["cgroup"]))

    def resume(self, cid):
        rec = self.load(cid)
        if self.status(rec) != "paused":
            raise UsageError(f"cannot resume container {cid}: it is not paused")
        self._freezer(lambda d: d.thaw(rec["cgroup"]))

    def _freezer(self, act):
        driver = cgroup_driver()
        if driver is None:
            raise MinirunError("pause needs cgroups, and this host has none mounted")
        try:
            act(driver)
        except OSError as e:
            raise MinirunError(f"freezer: {e}") from None

    def update(self, cid, resources):
        """Change the limits of a created or running container (Resources:
        what is None is left as it is)."""
        rec = self.load(cid)
        if self.status(rec) == "stopped":
            raise UsageError(f"cannot update container {cid}: it is stopped")
        driver = cgroup_driver()
        if driver is None:
            raise MinirunError("update needs cgroups, and this host has none mounted")
        try:
            driver.apply(rec["cgroup"], resources)
        except OSError as e:
            raise MinirunError(f"cgroup: {e}") from None


def check_capabilities_held(process):
    """A capability minirun does not hold itself (not in its bounding set:
    this host's root may lack some) cannot be granted — capset(2) would
    fail with EPERM deep in the start; name it here instead."""
    if process.capabilities is None:
        return
    from minirun.linux import caps
    held = caps.bounding_set()
    for key, names in record.to_dict(process.capabilities).items():
        for name in names:
            if caps.cap_number(name) not in held:
                raise UsageError(f"config.json: process.capabilities.{key}: {name}: minirun "
                                 f"does not hold it (not in its bounding set), so it cannot "
                                 f"give it")


def compile_seccomp(profile, spec, directory):
    """linux.seccomp is a profile in Docker's format but for includes and
    excludes: compiled like one (runtime/seccomp.py), kept beside the state."""
    from minirun.runtime.seccomp import compile_profile, content_name
    caps = spec.capabilities
    try:
        return compile_profile(profile, content_name(json.dumps(profile, sort_keys=True).encode()),
                               "config.json linux.seccomp", caps, directory)
    except UsageError as e:
        raise bundles.BundleError(str(e)) from None


def connect(path):
    """A unix socket connected to --console-socket, for the pty's master;
    connected here, on the host, since the container cannot reach the path."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise UsageError(f"--console-socket {path}: {e.strerror}") from None
    return s.detach()


def features():
    """What this runtime supports, as the runtime spec's features document
    (features.md) lists it."""
    from minirun.linux.fs import MOUNT_FLAGS, PROPAGATION
    from minirun.linux.seccomp import ACTIONS, OPS
    from minirun.linux import caps
    from minirun.runtime.seccomp import GO_ARCH
    return {
        "ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(MOUNT_FLAGS) + sorted(PROPAGATION),
        "linux": {
            "namespaces": sorted(bundles.NAMESPACES),
            "capabilities": sorted("CAP_" + caps.cap_name(n) for n in range(caps.last_cap() + 1)),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(ACTIONS), "operators": sorted(OPS),
                        "archs": sorted(GO_ARCH)},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": "minirun"},
    }
