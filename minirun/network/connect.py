"""A container's place on a network, from `create` to `rm`:

    connect()     at create: lease an address (ports checked), fill in the
                  spec's NetworkAttachment, and on a user network tell every
                  container there about the newcomer in its /etc/hosts
    wire()        at each start, parent side: bridge, veth, address, ports
    disconnect()  at rm: veth unplugged, address back to the pool, rules
                  gone, peers told, and the bridge removed when nobody is
                  left on it
"""
import os

from minirun.network.networks import DEFAULT, Networks, release_bridge
from minirun.runtime.etcfiles import write_hosts
from minirun.runtime.spec import NetworkAttachment


def connect(store_root, spec, ports, extra_hosts, running=None):
    nets = Networks(store_root)
    net = nets.get(spec.network)
    address = nets.allocate(net, spec.id, spec.name, spec.hostname, ports, extra_hosts, running)
    spec.attachment = NetworkAttachment(
        network=net.name, bridge=net.bridge, subnet=net.subnet, gateway=net.gateway,
        address=address, prefixlen=net.prefixlen, ports=list(ports))
    return net


def wire(spec, pid):
    from minirun.network import bridge
    bridge.attach(spec.attachment, spec.id, pid)


def _remove_bridge_if_unused(nets, network, bridge_name):
    """The leases, checked under the lock that allocation holds, say whether
    anyone in this store still uses the network; the bridge's marker says
    whether another store does (networks.release_bridge). If nobody, its
    bridge and rules go."""
    from minirun.network import bridge
    with nets.lock():
        if not nets.leases(network) and release_bridge(nets.root, bridge_name):
            bridge.remove_bridge(bridge_name)


def disconnect(store_root, container_id, attachment):
    from minirun.network import bridge
    nets = Networks(store_root)
    bridge.unplug(container_id)
    if attachment.ports:
        bridge.unpublish_ports(container_id)
    nets.release(container_id)
    _remove_bridge_if_unused(nets, attachment.network, attachment.bridge)
    refresh_hosts(store_root, attachment.network)     # the peers forget it


def release_orphan_leases(store_root, exists):
    """Give back the addresses of containers that never came to be (their
    creator was killed midway), and their bridge if nobody else uses it."""
    nets = Networks(store_root)
    for name, lease in nets.orphans(exists):
        nets.release(lease["container"])
        net = nets.get(name)
        _remove_bridge_if_unused(nets, net.name, net.bridge)


def host_lines(lease, peers=()):
    """/etc/hosts lines beyond localhost: --add-host entries, the container's
    own address and names, and its peers' names."""
    lines = [f"{ip}\t{name}" for name, ip in lease["extra_hosts"]]
    own = [lease["hostname"], lease["name"]] if lease["name"] else [lease["hostname"]]
    lines.append(f"{lease['address']}\t{' '.join(dict.fromkeys(own))}")
    return lines + [f"{peer['address']}\t{peer['name']}" for peer in peers
                    if peer["container"] != lease["container"] and peer["name"]]


def refresh_hosts(store_root, network, newcomer=None):
    """Rewrite /etc/hosts of the containers on a user network, where every
    container lists its peers. Docker's default bridge gives no names to its
    containers: there only the newcomer's own file is written."""
    leases = Networks(store_root).leases(network)
    shared = network != DEFAULT
    for lease in leases:
        if shared or lease["container"] == newcomer:
            bundle = os.path.join(store_root, "containers", lease["container"])
            write_hosts(bundle, host_lines(lease, leases if shared else ()))


def remove_network(store_root, name):
    from minirun.network import bridge
    Networks(store_root).remove(name, bridge.remove_bridge)


def prune(store_root):
    """Remove user networks without containers, and unused bridges."""
    nets = Networks(store_root)
    removed = []
    for net in nets.all():
        if nets.leases(net.name):
            continue
        if net.name != DEFAULT:
            remove_network(store_root, net.name)
            removed.append(net.name)
        else:
            _remove_bridge_if_unused(nets, net.name, net.bridge)
    return removed


def inspect(store_root, name):
    nets = Networks(store_root)
    net = nets.get(name)
    return {"Name": net.name, "Id": net.id, "Driver": "bridge",
            "IPAM": {"Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
            "Options": {"com.docker.network.bridge.name": net.bridge},
            "Containers": {lease["container"]: {"Name": lease["name"],
                                                "IPv4Address": f"{lease['address']}/{net.prefixlen}"}
                           for lease in nets.leases(name)}}
