"""A container's directory on the host (its "bundle"), under the store root:

    containers/<id>/config.json   the ContainerSpec
    containers/<id>/state.json    see state.py
    containers/<id>/container.log  what a detached container printed (JSON lines)
    containers/<id>/upper/        the overlay's writable layer
    containers/<id>/work/         overlayfs's scratch dir (same filesystem as upper)
    containers/<id>/rootfs/       where the overlay is mounted, in the container's
                                  mount namespace only: the host never sees it
    containers/<id>/hostname, hosts, resolv.conf   bind-mounted into /etc (etcfiles.py)
"""
import json
import os

from minirun.errors import MinirunError
from minirun.linux.files import remove_tree, write_atomic
from minirun.linux.process import process_start_time
from minirun.runtime import state as statefile
from minirun.runtime.spec import spec_from_dict, spec_to_dict


def new_id():
    return os.urandom(32).hex()


def create_bundle(store, spec, state):
    """The container's directory, its spec (config.json) and first state,
    made in tmp/ and renamed into containers/ whole: a container is either
    there with its state or not there (a SIGKILL midway leaves work in
    tmp/ for the next sweep)."""
    staging = store.mkdtemp("create-")
    for d in ("upper", "work", "rootfs"):
        os.mkdir(os.path.join(staging, d))
    write_spec(spec, staging)
    pid = os.getpid()
    statefile.write_new(staging, dict(state, id=spec.id, status="created", created=statefile.now(),
                                      owner_pid=pid, owner_start=process_start_time(pid)))
    os.makedirs(store.containers, exist_ok=True)
    os.rename(staging, spec.bundle)
    return spec.bundle


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


def write_spec(spec, directory=None):
    write_atomic(os.path.join(directory or spec.bundle, "config.json"),
                 json.dumps(spec_to_dict(spec), indent=1))


def load_spec(bundle):
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            return spec_from_dict(json.load(f))
    except (ValueError, KeyError, TypeError) as e:
        raise MinirunError(f"container {os.path.basename(bundle)[:12]} is damaged: its config.json "
                           f"cannot be read ({e}); remove it with rm -f") from None


def release_ports(spec):
    """A container that has ended publishes nothing: its DNAT rules go now,
    not at rm, so the port is free for another container (as in Docker)."""
    if spec.attachment is not None and spec.attachment.ports:
        from minirun.network.bridge import unpublish_ports
        unpublish_ports(spec.id)


def remove_bundle(bundle, spec=None):
    """The container goes, with what it holds outside its directory: its
    address lease and published ports (and the bridge, if it was the last)."""
    if spec is None:
        try:
            spec = load_spec(bundle)
        except (OSError, MinirunError):
            spec = None
    store_root = os.path.dirname(os.path.dirname(bundle))   # <root>/containers/<id>, <root>/tmp/<run>
    if spec is not None and "mount" not in spec.namespaces:
        detach_host_mounts(spec)
    if spec is not None and spec.attachment is not None:
        from minirun.network.connect import disconnect
        disconnect(store_root, spec.id, spec.attachment)
    # Out of containers/ in one rename, then deleted at leisure: a SIGKILL
    # during the rmtree leaves work in tmp/, never half a container.
    trash = os.path.join(store_root, "tmp", f"remove-{os.getpid()}-{os.path.basename(bundle)[:12]}")
    try:
        os.makedirs(os.path.dirname(trash), exist_ok=True)
        os.rename(bundle, trash)
    except FileNotFoundError:
        return
    except OSError:
        trash = bundle           # not a store's bundle (a build's RUN, say)
    remove_tree(trash)


def detach_host_mounts(spec):
    """--skip mount-namespace: the container mounted its root, /proc, /dev
    and volumes in the host's own mount table, where they outlive it. They
    go before the bundle is deleted: an rmtree through a mounted volume
    would delete the host's files."""
    from minirun.linux import fs
    fs.detach(spec.rootfs.mountpoint)


def all_containers(store):
    """[(id, bundle, state)] of every container, oldest first."""
    out = []
    try:
        ids = os.listdir(store.containers)
    except FileNotFoundError:
        return out
    for cid in ids:
        entry = one_container(store, cid)
        if entry is not None:
            out.append(entry)
    return sorted(out, key=lambda c: c[2].get("created", 0))


def one_container(store, cid):
    """(id, bundle, state) of the container `cid`, or None if there is none."""
    bundle = os.path.join(store.containers, cid)
    try:
        return cid, bundle, statefile.read(bundle)
    except (OSError, ValueError) as e:
        # Bundles come and go whole (create_bundle, remove_bundle): one
        # without a readable state is damaged, and shown as such.
        if os.path.isdir(bundle):
            return cid, bundle, statefile.damaged(cid, bundle, e)
        return None


def sweep_dead_work(store):
    """Remove what processes killed mid-work left in tmp/. A RUN step's or
    a create's bundle (it has a config.json) goes as a container does: with
    its network lease, and the bridge if nobody else uses it."""
    for path in store.dead_work():
        if os.path.exists(os.path.join(path, "config.json")):
            remove_bundle(path)
        remove_tree(path)


def sweep_orphans(store):
    """Tell the truth about containers whose supervisor was killed (SIGKILL
    gives no chance to write it down): record them exited, remove their
    cgroups, and remove the `--rm` ones altogether; and what killed
    processes left half-made in tmp/ (a create's bundle holds a lease).
    Returns all_containers() as the sweep leaves them: one walk of the
    store serves the caller too."""
    sweep_dead_work(store)
    if os.path.isdir(os.path.join(store.root, "networks")):
        from minirun.network.connect import release_orphan_leases
        release_orphan_leases(store.root, lambda cid: os.path.isdir(os.path.join(store.containers, cid)))
    cgroup = None
    kept = []
    for cid, bundle, state in all_containers(store):
        if state["status"] == "damaged":
            kept.append((cid, bundle, state))
            continue
        def owner_gone(state=state):      # asked only where it matters: one /proc read each
            return not statefile.alive(state.get("owner_pid"), state.get("owner_start"))
        if state["status"] in ("running", "starting") and statefile.status(state)[0] == "exited" \
                and owner_gone():
            from minirun.linux import cgroups
            cgroup = cgroup or cgroups.detect()
            if cgroup is not None:
                cgroup.destroy(cid)
            status, code = statefile.status(state)
            try:
                statefile.update(bundle, status=status, exit_code=code, finished_at=statefile.now())
            except (OSError, ValueError):
                pass            # a full disk, say: status() tells the truth all the same
            state["status"] = status
            try:
                release_ports(load_spec(bundle))
            except (OSError, MinirunError):
                pass
        if state.get("auto_remove") and state["status"] == "exited" and owner_gone():
            remove_bundle(bundle)
            continue
        kept.append((cid, bundle, state))
    return kept
