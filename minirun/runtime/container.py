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
    write_atomic(os.path.join(bundle, "config.json"), json.dumps(spec_to_dict(spec), indent=1))
    pid = os.getpid()
    statefile.write_new(bundle, dict(state, id=spec.id, status="created", created=statefile.now(),
                                     owner_pid=pid, owner_start=statefile.process_start_time(pid)))
    return bundle


def load_spec(bundle):
    with open(os.path.join(bundle, "config.json")) as f:
        return spec_from_dict(json.load(f))


ETC_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def etc_file_paths(bundle):
    """{path in the container: the file in the bundle bind-mounted there}."""
    return {target: os.path.join(bundle, os.path.basename(target)) for target in ETC_FILES}


def write_etc_files(bundle, hostname, extra_hosts=()):
    """Write /etc/hostname, /etc/hosts and /etc/resolv.conf for the container."""
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             *extra_hosts]
    content = {
        "/etc/hostname": hostname + "\n",
        "/etc/hosts": "\n".join(hosts) + "\n",
        "/etc/resolv.conf": host_resolv_conf(),
    }
    for target, path in etc_file_paths(bundle).items():
        with open(path, "w") as f:
            f.write(content[target])


def host_resolv_conf():
    """The host's resolv.conf minus loopback resolvers, which would mean the
    container's own loopback, where nothing listens (Docker does the same)."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    keep = [line for line in lines
            if not (line.split()[:1] == ["nameserver"] and len(line.split()) > 1
                    and (line.split()[1].startswith("127.") or line.split()[1] == "::1"))]
    return "\n".join(keep) + "\n"


def remove_bundle(bundle):
    import shutil
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
