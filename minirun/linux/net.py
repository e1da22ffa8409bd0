"""Network steps small enough not to need netlink."""
import fcntl
import struct
# socket.py's C core, as in runtime/sync.py: socket.py costs ~2.5 ms to import
import _socket

from minirun.linux import explain

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_up_loopback():
    """Set IFF_UP on `lo` of this network namespace — ioctl SIOCSIFFLAGS, netdevice(7).

    A new network namespace starts with `lo` down; Docker's `--network none`
    still has it up so that 127.0.0.1 works.
    """
    explain.step('ioctl(sock, SIOCSIFFLAGS, {ifr_name="lo", IFF_UP})', "netdevice(7)")
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifreq = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        flags = struct.unpack("16sH14x", ifreq)[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        s.close()
