"""rtnetlink(7): links, addresses and routes, asked of the kernel directly.

A netlink request is a message on an AF_NETLINK socket; the kernel answers
with the messages asked for, then an acknowledgement (or an errno).
pyroute2's message classes encode and decode them; the socket and the
request/answer loop are the few lines below. We do not use pyroute2's
IPRoute: importing it costs over 100 ms, paid by every bridged `run`.
"""
import errno
import os
import socket
import struct
import sys

from minirun.linux import explain
from minirun.linux.syscalls import CLONE_NEWNET, setns

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
HEADER = struct.Struct("=LHHLL")   # struct nlmsghdr: length, type, flags, seq, pid


def _message_classes():
    """pyroute2's rtnetlink message classes, without running pyroute2's
    package __init__, which imports every netlink family it knows (~200 ms).
    An empty package module lets the submodules import on their own."""
    if "pyroute2" not in sys.modules:
        import importlib.util
        spec = importlib.util.find_spec("pyroute2")
        sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg
    return ifinfmsg, ifaddrmsg, rtmsg


class NetlinkError(OSError):
    pass


class Netlink:
    """A NETLINK_ROUTE socket in the network namespace it was opened in:
    that namespace is the one every request on it changes."""

    def __init__(self, netns_path=None):
        self.ifinfmsg, self.ifaddrmsg, self.rtmsg = _message_classes()
        if netns_path is None:
            self.sock = self._open()
        else:
            self.sock = self._open_in(netns_path)
        self.seq = 0

    @staticmethod
    def _open():
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.bind((0, 0))
        return sock

    def _open_in(self, netns_path):
        """setns(2) there, open the socket, setns back: the socket keeps
        the namespace it was born in."""
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(netns_path, os.O_RDONLY)
        try:
            setns(target, CLONE_NEWNET)
            try:
                return self._open()
            finally:
                setns(own, CLONE_NEWNET)
        finally:
            os.close(own)
            os.close(target)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the request/answer loop ---------------------------------------------------

    def request(self, msg, msg_type, flags, what):
        """Send one message; return the decoded answers that precede the
        acknowledgement, or raise NetlinkError naming `what` with the errno."""
        self.seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags   # the ACK ends the answer
        msg["header"]["sequence_number"] = self.seq
        msg.encode()
        self.sock.send(msg.data)
        answers = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset < len(data):
                length, kind, _, _, _ = HEADER.unpack_from(data, offset)
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + HEADER.size)[0]
                    if code:
                        raise NetlinkError(code, f"{what}: {os.strerror(code)}")
                    return answers
                answer = type(msg)(data[offset:offset + length])
                answer.decode()
                answers.append(answer)
                offset += (length + 3) & ~3

    def _link(self, index=0, attrs=(), **fields):
        msg = self.ifinfmsg()
        msg["index"] = index
        for key, value in fields.items():
            msg[key] = value
        msg["attrs"] = list(attrs)
        return msg

    # --- links ---------------------------------------------------------------------

    def link_index(self, name):
        """The index of the interface called `name`, or None."""
        try:
            [link] = self.request(self._link(attrs=[("IFLA_IFNAME", name)]), RTM_GETLINK, 0,
                                  f"find link {name}")
        except NetlinkError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return link["index"]

    def add_bridge(self, name):
        """ip link add NAME type bridge"""
        explain.step(f'RTM_NEWLINK {{ifname="{name}", kind="bridge"}}', "rtnetlink(7)")
        info = {"attrs": [("IFLA_INFO_KIND", "bridge")]}
        self.request(self._link(attrs=[("IFLA_IFNAME", name), ("IFLA_LINKINFO", info)]),
                     RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, f"create bridge {name}")
        return self.link_index(name)

    def add_veth_pair(self, name, peer, peer_netns_path):
        """ip link add NAME type veth peer name PEER netns NS: the peer is
        born inside the container's network namespace."""
        explain.step(f'RTM_NEWLINK {{ifname="{name}", kind="veth", peer="{peer}" '
                     f'in {peer_netns_path}}}', "veth(4)")
        fd = os.open(peer_netns_path, os.O_RDONLY)
        try:
            peer_msg = {"attrs": [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", fd)]}
            info = {"attrs": [("IFLA_INFO_KIND", "veth"),
                              ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_msg)]})]}
            self.request(self._link(attrs=[("IFLA_IFNAME", name), ("IFLA_LINKINFO", info)]),
                         RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                         f"create veth {name}")
        finally:
            os.close(fd)
        return self.link_index(name)

    def set_master(self, index, master_index):
        """ip link set DEV master BRIDGE"""
        self.request(self._link(index, attrs=[("IFLA_MASTER", master_index)]),
                     RTM_SETLINK, 0, f"attach link {index} to bridge")

    def set_up(self, index):
        """ip link set DEV up"""
        self.request(self._link(index, flags=IFF_UP, change=IFF_UP),
                     RTM_NEWLINK, 0, f"bring link {index} up")

    def delete_link(self, name):
        """ip link del NAME (a veth's peer goes with it)."""
        explain.step(f'RTM_DELLINK {{ifname="{name}"}}', "rtnetlink(7)")
        self.request(self._link(attrs=[("IFLA_IFNAME", name)]), RTM_DELLINK, 0,
                     f"delete link {name}")

    # --- addresses and routes ------------------------------------------------------

    def add_address(self, index, address, prefixlen):
        """ip addr add ADDRESS/PREFIXLEN dev DEV"""
        explain.step(f"RTM_NEWADDR {{{address}/{prefixlen} on link {index}}}", "rtnetlink(7)")
        msg = self.ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self.request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                     f"add address {address}/{prefixlen}")

    def add_default_route(self, gateway):
        """ip route add default via GATEWAY"""
        explain.step(f"RTM_NEWROUTE {{default via {gateway}}}", "rtnetlink(7)")
        msg = self.rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["scope"] = RT_SCOPE_UNIVERSE
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway)]
        self.request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                     f"add default route via {gateway}")


def set_sysctl(name, value):
    """Write /proc/sys/NAME — sysctl(8), proc(5)."""
    explain.step(f"write /proc/sys/{name} = {value}", "proc(5)")
    with open(f"/proc/sys/{name}", "w") as f:
        f.write(str(value))
