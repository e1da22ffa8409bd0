"""Bridge networking, Docker's default: the wiring of one container.

    host                                   container's network namespace
    ┌──────────────────────────────┐       ┌─────────────────────────┐
    │ minirun0 (bridge, 10.200.0.1)│       │ eth0 10.200.0.2/16      │
    │   └── veth<id> ═══════════════════════ default via 10.200.0.1  │
    │ nft: masquerade 10.200/16 out│       │ lo                      │
    │ nft: DNAT host:18080 → :80   │       └─────────────────────────┘
    └──────────────────────────────┘

attach() runs on the parent side of the start sequence, while the child
waits after NAMESPACES_READY: the parent can reach the new namespace through
/proc/<pid>/ns/net. The kernel deletes the veth pair with the namespace
when the container exits, but later, from a work queue; `rm` unplugs it
itself, with its rules and its address, and the bridge goes with its last user.
"""
import errno

from minirun.linux import nftables
from minirun.linux.netlink import Netlink, NetlinkError, set_sysctl

CONTAINER_END = "eth0"


def host_end(container_id):
    return "veth" + container_id[:8]


def container_tag(container_id):
    return f"container {container_id[:12]}"


def network_tag(bridge):
    return f"network {bridge}"


def attach(attachment, container_id, pid):
    """Wire the container whose PID 1 is `pid` into its network's bridge.
    `attachment` is the spec's NetworkAttachment."""
    netns = f"/proc/{pid}/ns/net"
    a = attachment
    with Netlink() as host:
        bridge = ensure_bridge(host, a.bridge, a.gateway, a.prefixlen, a.subnet)
        try:
            veth = host.add_veth_pair(host_end(container_id), CONTAINER_END, netns)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:     # a restart, before the kernel
                raise                       # dismantled the old namespace
            host.delete_link(host_end(container_id))
            veth = host.add_veth_pair(host_end(container_id), CONTAINER_END, netns)
        host.set_master(veth, bridge)
        host.set_up(veth)
    with Netlink(netns) as inside:
        eth0 = inside.link_index(CONTAINER_END)
        inside.add_address(eth0, a.address, a.prefixlen)
        inside.set_up(eth0)
        inside.add_default_route(a.gateway)
    if a.ports:
        publish_ports(container_id, a.address, a.ports)


def ensure_bridge(nl, name, gateway, prefixlen, subnet):
    """The bridge, made on first use: the gateway address on it, IPv4
    forwarding on, and its subnet masqueraded on the way out."""
    index = nl.link_index(name)
    if index is not None:
        return index
    try:
        index = nl.add_bridge(name)
    except NetlinkError:             # another `run` made it a moment ago
        index = nl.link_index(name)
        if index is None:
            raise
        return index
    nl.add_address(index, gateway, prefixlen)
    nl.set_up(index)
    set_sysctl("net/ipv4/ip_forward", 1)
    # DNAT of a connection to 127.0.0.1 sends a packet with a loopback source
    # into the bridge; the kernel drops such "martians" unless told otherwise.
    set_sysctl(f"net/ipv4/conf/{name}/route_localnet", 1)
    nftables.add_rules(network_tag(name), [
        ("postrouting", f'ip saddr {subnet} oifname != "{name}" masquerade'),
        ("postrouting", f'ip saddr 127.0.0.0/8 oifname "{name}" masquerade'),
    ])
    return index


def publish_ports(container_id, address, ports):
    """One DNAT rule per -p, reached for packets to any host address."""
    rules = []
    for p in ports:
        match = "" if p.host_ip == "0.0.0.0" else f"ip daddr {p.host_ip} "
        rules.append(("ports", f"{match}{p.proto} dport {p.host_port} "
                               f"dnat to {address}:{p.container_port}"))
    nftables.add_rules(container_tag(container_id), rules, replace=True)  # a restart: afresh


def unplug(container_id):
    """Delete the container's veth pair now. Its namespace's death deletes it
    too, but asynchronously (netns cleanup runs on a kernel work queue, seconds
    late when many namespaces die at once): without this, `rm` would return
    while the host still shows veth<id>."""
    with Netlink() as nl:
        try:
            nl.delete_link(host_end(container_id))
        except NetlinkError as e:
            if e.errno not in (errno.ENODEV, errno.ENOENT):
                raise


def unpublish_ports(container_id):
    nftables.delete_rules(container_tag(container_id))


def remove_bridge(name):
    """Delete the bridge and its rules. The caller holds the networks' lock
    and has seen no lease left: the leases, not the interfaces still plugged
    in, say who uses a network (a dead container's veth lingers a moment,
    until the kernel has dismantled its namespace)."""
    with Netlink() as nl:
        if nl.link_index(name) is not None:
            nl.delete_link(name)
    nftables.delete_rules(network_tag(name))
