"""Networks and their address leases, on disk under the store root:

    networks/<name>.json            {"name", "id", "subnet", "gateway", "bridge", "created"}
    networks/<name>.leases/<ip>     an address in use: {"container", "name", "hostname",
                                    "ports", "extra_hosts"}
    networks/.lock                  flock(2), held while leases or networks change

The default network, `bridge`, is defined on first use, on the bridge
`minirun0`, with the subnet MINIRUN_BRIDGE_SUBNET (default 10.200.0.0/16).
A lease file is created with O_EXCL while the lock is held: two `run`s at the
same moment never get the same address, and `rm` gives it back.

Every command's sweep reads the leases (sweep_orphans); only a command that
makes or wires a network needs ipaddress, socket and hashlib (~9 ms of
imports), so those are imported where they are used.
"""
import fcntl
import json
import os
import re
import time
from contextlib import contextmanager

from minirun.errors import MinirunError, UsageError
from minirun.linux.files import write_atomic
from minirun.linux.process import process_start_time
from minirun.record import Record
from minirun.runtime.spec import Port

DEFAULT = "bridge"
DEFAULT_BRIDGE = "minirun0"
DEFAULT_SUBNET = "10.200.0.0/16"
USER_SUBNETS = "10.201.0.0/16"     # user networks get a /24 from here unless --subnet
MODES = ("none", "host")           # besides networks' names and container:ID
NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"


class NetworkNotFound(MinirunError):
    pass


class Network(Record):
    name: str
    id: str
    subnet: str
    gateway: str
    bridge: str
    created: float

    @property
    def prefixlen(self):
        import ipaddress
        return ipaddress.ip_network(self.subnet).prefixlen


def parse_port(text):
    """-p's forms, Docker's spelling; a malformed one is a UsageError."""
    bad = UsageError(f"-p {text}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]")
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise bad
    parts = spec.rsplit(":", 2)
    if len(parts) == 2:
        host_ip, (host_port, ctr_port) = "0.0.0.0", parts
    elif len(parts) == 3:
        host_ip, host_port, ctr_port = parts
        import ipaddress
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise bad from None
    else:
        raise bad
    ports = []
    for value in (host_port, ctr_port):
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise bad
        ports.append(int(value))
    return Port(host_ip, ports[0], ports[1], proto)


class Networks:
    def __init__(self, store_root):
        self.root = store_root
        self.dir = os.path.join(store_root, "networks")

    def lock(self):
        return _flocked(self.dir)

    def _path(self, name):
        return os.path.join(self.dir, name + ".json")

    def _leases_dir(self, name):
        return os.path.join(self.dir, name + ".leases")

    # --- definitions ---------------------------------------------------------------

    def names(self):
        try:
            return sorted(f[:-5] for f in os.listdir(self.dir) if f.endswith(".json"))
        except FileNotFoundError:
            return []

    def get(self, name):
        """The network called `name`; the default one is defined on first use."""
        try:
            with open(self._path(name)) as f:
                return Network(**json.load(f))
        except (ValueError, TypeError) as e:
            raise MinirunError(f"network {name} is damaged: {self._path(name)}: {e}; "
                               f"`minirun repair` removes it") from None
        except FileNotFoundError:
            if name == DEFAULT:
                with self.lock():
                    if not os.path.exists(self._path(name)):
                        subnet = os.environ.get("MINIRUN_BRIDGE_SUBNET", DEFAULT_SUBNET)
                        return self._define(DEFAULT, subnet, DEFAULT_BRIDGE)
                return self.get(name)
            raise NetworkNotFound(f"network {name} not found: see `minirun network ls`") from None

    def all(self):
        return [self.get(name) for name in self.names()]

    def create(self, name, subnet=None):
        if not re.match(NAME_RE, name) or name in MODES or name == DEFAULT:
            raise UsageError(f"invalid network name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, "
                             f"not {DEFAULT}, none or host")
        with self.lock():
            if os.path.exists(self._path(name)):
                raise UsageError(f"network with name {name} already exists")
            if subnet is None:
                subnet = self._free_subnet()
            net = self._define(name, subnet, None)
        return net

    def _define(self, name, subnet, bridge):
        import ipaddress
        try:
            network = ipaddress.IPv4Network(subnet)
        except ValueError as e:
            raise UsageError(f"invalid subnet {subnet}: {e}") from None
        if network.prefixlen > 30:
            raise UsageError(f"subnet {subnet} is too small: at most /30")
        for other, used in self._subnets_in_use():
            if network.overlaps(used):
                raise UsageError(f"subnet {subnet} overlaps {used} of {other}")
        net_id = os.urandom(32).hex()
        net = Network(name=name, id=net_id, subnet=str(network),
                      gateway=str(next(network.hosts())),
                      bridge=bridge or "mr-" + net_id[:12], created=time.time())
        os.makedirs(self.dir, exist_ok=True)
        write_atomic(self._path(name), json.dumps(net.__dict__, indent=1))
        return net

    def _subnets_in_use(self):
        """Our networks' subnets, and the routes of the host's other interfaces."""
        import ipaddress
        nets = self.all()
        ours = [(n.name, ipaddress.IPv4Network(n.subnet)) for n in nets]
        bridges = {n.bridge for n in nets} | {DEFAULT_BRIDGE}  # minirun0 is ours
        return ours + [(f"the host's {dev}", net) for dev, net in host_routes()
                       if dev not in bridges]

    def _free_subnet(self):
        import ipaddress
        used = [net for _, net in self._subnets_in_use()]
        for candidate in ipaddress.IPv4Network(USER_SUBNETS).subnets(new_prefix=24):
            if not any(candidate.overlaps(u) for u in used):
                return str(candidate)
        raise MinirunError(f"no free /24 left in {USER_SUBNETS}: give --subnet")

    def remove(self, name, remove_bridge):
        """The network goes: its bridge first (by remove_bridge), then its
        definition, so that a SIGKILL in between leaves a definition that
        `network rm` finds again, never a bridge nothing knows of."""
        if name == DEFAULT:
            raise UsageError(f"{DEFAULT} is the default network and cannot be removed")
        net = self.get(name)
        with self.lock():
            users = self.leases(name)
            if users:
                raise UsageError(f"network {name} is in use by container "
                                 f"{users[0]['container'][:12]}: remove it first")
            release_bridge(self.root, net.bridge)
            remove_bridge(net.bridge)
            os.unlink(self._path(name))
            _rmdir(self._leases_dir(name))
        return net

    # --- leases --------------------------------------------------------------------

    def leases(self, name):
        """Every lease of the network: its file's JSON plus "address"."""
        out = []
        d = self._leases_dir(name)
        try:
            entries = os.listdir(d)
        except FileNotFoundError:
            return out
        for address in entries:
            try:
                with open(os.path.join(d, address)) as f:
                    out.append(dict(json.load(f), address=address))
            except (OSError, ValueError):
                continue      # being written or removed right now
        return out

    def published(self, running, but=None):
        """[(lease, Port)] of the ports that running containers publish (a
        stopped container holds its ports for its next start, not meanwhile)."""
        return [(lease, Port(**p)) for n in self.names() for lease in self.leases(n)
                for p in lease["ports"] if lease["container"] != but and running(lease["container"])]

    def allocate(self, net, container_id, name, hostname, ports, extra_hosts=(), running=None):
        """Lease the lowest free address of `net` for the container, after
        checking that none of its ports is published already. The bridge may
        be shared with other stores (minirun0): their leases count too, under
        a lock every store takes."""
        import ipaddress
        with self.lock(), bridge_users_lock():
            mark_bridge_user(self.root, net.bridge)
            check_ports_free(ports, self.published(running or (lambda cid: True)))
            d = self._leases_dir(net.name)
            os.makedirs(d, exist_ok=True)
            taken = set(os.listdir(d)) | {net.gateway} | leased_by_other_stores(self.root, net.bridge)
            owner = os.getpid()      # until the container exists, its lease is this process's
            record = json.dumps({"container": container_id, "name": name, "hostname": hostname,
                                 "ports": [p.__dict__ for p in ports],
                                 "extra_hosts": list(extra_hosts), "owner_pid": owner,
                                 "owner_start": process_start_time(owner)})
            for address in ipaddress.IPv4Network(net.subnet).hosts():
                if str(address) in taken:
                    continue
                fd = os.open(os.path.join(d, str(address)), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(record)
                return str(address)
        raise MinirunError(f"network {net.name}: no free address left in {net.subnet}")

    def orphans(self, exists):
        """Leases of containers that do not exist (exists(id) is False) and
        whose owner, the process that took them, is dead: a create or a RUN
        step killed between leasing the address and recording the container.
        [(network name, lease)]."""
        return [(n, lease) for n in self.names() for lease in self.leases(n)
                if not exists(lease["container"])
                and process_start_time(lease.get("owner_pid") or 0) != lease.get("owner_start")]

    def release(self, container_id):
        """Give back every address the container holds."""
        with self.lock():
            for name in self.names():
                for lease in self.leases(name):
                    if lease["container"] == container_id:
                        os.unlink(os.path.join(self._leases_dir(name), lease["address"]))


# A bridge is a host-wide device, and several stores may plug containers into
# the same one (minirun0): each store that holds a lease on it keeps a marker
# here, and only the last store to let go may remove it.
BRIDGE_USERS = "/run/minirun/bridges"


@contextmanager
def _flocked(directory):
    """Hold `directory`/.lock exclusively — flock(2)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def bridge_users_lock():
    return _flocked(BRIDGE_USERS)


def _marker(store_root, bridge):
    import hashlib
    key = hashlib.sha256(os.path.abspath(store_root).encode()).hexdigest()[:16]
    return os.path.join(BRIDGE_USERS, bridge, key)


def mark_bridge_user(store_root, bridge):
    """This store uses `bridge`: say so where other stores look. The caller
    holds bridge_users_lock."""
    path = _marker(store_root, bridge)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(os.path.abspath(store_root))


def _other_stores(store_root, bridge):
    """(marker, store root) of every other store marked as using `bridge`;
    a marker whose store is gone is removed on the way. The caller holds
    bridge_users_lock."""
    d = os.path.dirname(_marker(store_root, bridge))
    for entry in os.listdir(d) if os.path.isdir(d) else []:
        marker = os.path.join(d, entry)
        try:
            with open(marker) as f:
                other = f.read()
        except OSError:
            continue
        if other == os.path.abspath(store_root):
            continue
        if not os.path.isdir(other):
            os.unlink(marker)
            continue
        yield marker, other


def leased_by_other_stores(store_root, bridge):
    """The addresses other stores have leased on `bridge`. The caller holds
    bridge_users_lock."""
    taken = set()
    for _, other in _other_stores(store_root, bridge):
        nets = Networks(other)
        for name in nets.names():
            try:
                if nets.get(name).bridge == bridge:
                    taken |= set(os.listdir(nets._leases_dir(name)))
            except (MinirunError, OSError):
                continue
    return taken


def release_bridge(store_root, bridge):
    """This store is done with `bridge`; True if no other store still uses
    it (a store whose directory is gone uses nothing)."""
    with bridge_users_lock():
        mine = _marker(store_root, bridge)
        if os.path.exists(mine):
            os.unlink(mine)
        if any(_other_stores(store_root, bridge)):
            return False
        d = os.path.dirname(mine)
        if os.path.isdir(d) and not os.listdir(d):
            os.rmdir(d)
        return True


def check_ports_free(wanted, published, probe=True):
    """Refuse a host port that is published already, by us or (probe) by a
    listening host process (which the DNAT rule would silently hide)."""
    import socket
    for p in wanted:
        for lease, q in published:
            same_port = (p.proto, p.host_port) == (q.proto, q.host_port)
            if same_port and (p.host_ip == q.host_ip or "0.0.0.0" in (p.host_ip, q.host_ip)):
                raise UsageError(f"-p {p.host_ip}:{p.host_port}/{p.proto}: port is already "
                                 f"published by container {lease['container'][:12]}")
        if not probe:
            continue
        kind = socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((p.host_ip, p.host_port))
            except OSError as e:
                raise UsageError(f"-p {p.host_ip}:{p.host_port}/{p.proto}: "
                                 f"{e.strerror.lower()}") from None


def host_routes():
    """[(device, network)] from /proc/net/route, the default route left out."""
    import ipaddress
    import socket
    out = []
    try:
        with open("/proc/net/route") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        dev, dest, _, _, _, _, _, mask = line.split()[:8]
        if int(mask, 16) == 0:
            continue
        to_ip = lambda h: socket.inet_ntoa(int(h, 16).to_bytes(4, "little"))
        out.append((dev, ipaddress.IPv4Network(f"{to_ip(dest)}/{to_ip(mask)}", strict=False)))
    return out


def _rmdir(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
