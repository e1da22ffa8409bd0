"""A container's directory on the host (its "bundle"), under the store root:

    containers/<id>/config.json   the ContainerSpec
    containers/<id>/state.json    see state.py
    containers/<id>/container.log  what a detached container printed (JSON lines)
    containers/<id>/upper/        the overlay's writable layer
    containers/<id>/work/         overlayfs's scratch dir (same filesystem as upper)
    containers/<id>/rootfs/       where the overlay is mounted, in the container's
                                  mount namespace only: the host never sees it
    containers/<id>/hostname, hosts, resolv.conf   bind-mounted into /etc
"""
import json
import os

from minirun.image.store import write_atomic
from minirun.runtime import state as statefile
from minirun.runtime.spec import spec_from_dict, spec_to_dict


def new_id():
    return os.urandom(32).hex()


def create_bundle(store, spec, state):
    """The container's directory, its spec (config.json) and first state."""
    bundle = spec.bundle
    os.makedirs(store.containers, exist_ok=True)
    os.mkdir(bundle, 0o700)
    for d in ("upper", "work", "rootfs"):
        os.mkdir(os.path.join(bundle, d))
    write_spec(spec)
    pid = os.getpid()
    statefile.write_new(bundle, dict(state, id=spec.id, status="created", created=statefile.now(),
                                     owner_pid=pid, owner_start=statefile.process_start_time(pid)))
    return bundle


def give_to_container_root(spec):
    """--userns=remap: the writable layer and the /etc files belong to the
    container's root, that is to its uid outside; else root inside could
    not write to its own /."""
    if spec.userns is None:
        return
    uid, gid = spec.userns.root
    for path in (spec.rootfs.upperdir, *spec.etc_files.values()):
        if os.path.exists(path):
            os.chown(path, uid, gid)


def write_spec(spec):
    write_atomic(os.path.join(spec.bundle, "config.json"), json.dumps(spec_to_dict(spec), indent=1))


def load_spec(bundle):
    with open(os.path.join(bundle, "config.json")) as f:
        return spec_from_dict(json.load(f))


ETC_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def etc_file_paths(bundle):
    """{path in the container: the file in the bundle bind-mounted there}."""
    return {target: os.path.join(bundle, os.path.basename(target)) for target in ETC_FILES}


def write_etc_files(bundle, hostname, host_lines=(), dns=(), keep_loopback_dns=False):
    """Write /etc/hostname, /etc/hosts and /etc/resolv.conf for the container."""
    files = etc_file_paths(bundle)
    with open(files["/etc/hostname"], "w") as f:
        f.write(hostname + "\n")
    with open(files["/etc/resolv.conf"], "w") as f:
        f.write(resolv_conf(dns, keep_loopback_dns))
    write_hosts(bundle, host_lines)


def write_hosts(bundle, lines):
    """/etc/hosts, rewritten in place: it is bind-mounted into a running
    container, and a new file (rename) would not reach it there."""
    try:
        with open(os.path.join(bundle, "hosts"), "w") as f:
            f.write("\n".join(["127.0.0.1\tlocalhost",
                               "::1\tlocalhost ip6-localhost ip6-loopback", *lines]) + "\n")
    except FileNotFoundError:      # the bundle is not there (yet, or any more)
        pass


def host_hosts_lines():
    """The host's /etc/hosts, for a container on the host's network."""
    try:
        with open("/etc/hosts") as f:
            return [line for line in f.read().splitlines() if line.strip()]
    except OSError:
        return []


def resolv_conf(dns=(), keep_loopback=False):
    """The host's resolv.conf minus loopback resolvers, which would mean the
    container's own loopback, where nothing listens (Docker does the same;
    with the host's network they stay); --dns servers replace the host's."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    def nameserver(line):
        words = line.split()
        return words[1] if len(words) > 1 and words[0] == "nameserver" else None
    keep = [line for line in lines if nameserver(line) is None
            or not (dns or not keep_loopback and (nameserver(line).startswith("127.")
                                                   or nameserver(line) == "::1"))]
    return "\n".join(keep + [f"nameserver {ip}" for ip in dns]) + "\n"


def remove_bundle(bundle, spec=None):
    """The container goes, with what it holds outside its directory: its
    address lease and published ports (and the bridge, if it was the last)."""
    import shutil
    if spec is None:
        try:
            spec = load_spec(bundle)
        except (OSError, ValueError):
            spec = None
    if spec is not None and spec.attachment is not None:
        from minirun.network.connect import disconnect
        store_root = os.path.dirname(os.path.dirname(bundle))   # <root>/containers/<id>, <root>/tmp/<run>
        disconnect(store_root, spec.id, spec.attachment)
    shutil.rmtree(bundle, ignore_errors=True)


def all_containers(store):
    """[(id, bundle, state)] of every container, oldest first."""
    out = []
    try:
        ids = os.listdir(store.containers)
    except FileNotFoundError:
        return out
    for cid in ids:
        bundle = os.path.join(store.containers, cid)
        try:
            out.append((cid, bundle, statefile.read(bundle)))
        except (OSError, ValueError):
            continue   # being created or removed right now
    return sorted(out, key=lambda c: c[2].get("created", 0))


def sweep_orphans(store):
    """Tell the truth about containers whose supervisor was killed (SIGKILL
    gives no chance to write it down): record them exited, remove their
    cgroups, and remove the `--rm` ones altogether."""
    cgroup = None
    for cid, bundle, state in all_containers(store):
        owner_gone = not statefile.alive(state.get("owner_pid"), state.get("owner_start"))
        if state["status"] in ("running", "starting") and statefile.status(state)[0] == "exited" \
                and owner_gone:
            from minirun.linux import cgroups
            cgroup = cgroup or cgroups.detect()
            if cgroup is not None:
                cgroup.destroy(cid)
            status, code = statefile.status(state)
            statefile.update(bundle, status=status, exit_code=code, finished_at=statefile.now())
            state["status"] = status
        if state.get("auto_remove") and owner_gone and state["status"] == "exited":
            remove_bundle(bundle)
