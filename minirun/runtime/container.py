"""A container's directory on the host (its "bundle"), under the store root:

    containers/<id>/state.json    who owns it, whether to remove it at exit
    containers/<id>/upper/        the overlay's writable layer
    containers/<id>/work/         overlayfs's scratch dir (same filesystem as upper)
    containers/<id>/rootfs/       where the overlay is mounted, in the container's
                                  mount namespace only: the host never sees it
    containers/<id>/hostname, hosts, resolv.conf   bind-mounted into /etc
"""
import json
import os

from minirun.image.store import write_atomic


def new_id():
    return os.urandom(32).hex()


def process_start_time(pid):
    """Field 22 of /proc/PID/stat: tells a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def create_bundle(store, container_id, state):
    bundle = os.path.join(store.containers, container_id)
    os.makedirs(store.containers, exist_ok=True)
    os.mkdir(bundle, 0o700)
    for d in ("upper", "work", "rootfs"):
        os.mkdir(os.path.join(bundle, d))
    pid = os.getpid()
    state = dict(state, id=container_id, owner_pid=pid, owner_start=process_start_time(pid))
    write_atomic(os.path.join(bundle, "state.json"), json.dumps(state, indent=1))
    return bundle


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


def sweep_orphans(store):
    """Remove the bundles of `--rm` containers whose minirun was killed
    (SIGKILL gives no chance to clean up; the next minirun does it)."""
    try:
        ids = os.listdir(store.containers)
    except FileNotFoundError:
        return
    for cid in ids:
        bundle = os.path.join(store.containers, cid)
        try:
            with open(os.path.join(bundle, "state.json")) as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if state.get("auto_remove") and process_start_time(state["owner_pid"]) != state["owner_start"]:
            remove_bundle(bundle)
