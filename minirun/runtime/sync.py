"""The parent ↔ child conversation during a container's start.

A SOCK_SEQPACKET socketpair: each send is one message, boundaries kept, and
file descriptors can travel with it (SCM_RIGHTS, unix(7)). The child's end
is close-on-exec, so the parent reads end-of-file at the moment the
container's program has replaced the child: that is how it knows execve
succeeded.

    parent (host)                               child (becomes the container)
      │                                           │ unshare(mount, uts, ipc, net)
      │ ◀──────────────────── NAMESPACES_READY ───│
      │ cgroup, network: set up from outside      │ meanwhile: overlay, volumes,
      │                                           │ /proc /sys /dev
      │ ─── CONTINUE ──────────────────────────▶  │
      │                                           │ unshare(cgroup), /sys/fs/cgroup,
      │                                           │ pivot_root, masked paths
      │ ◀──────────────────── PTY_MASTER + fd ────│ (only with -t)
      │                                           │ user, capabilities, execve
      │ ◀──────────────────── end-of-file ────────│ (execve closed the socket)
      │            or ERROR <status> <message>    │ (and the child exits)

An OCI `create` (a handoff, start.Handoff) ends one message early: the
child, ready to execve, sends CREATED and blocks on the exec FIFO, and
the parent writes the state and exits; `start` opens the FIFO later. What
goes wrong after CREATED can only go to the container's stderr.

      │ ◀──────────────────── CREATED ────────────│ then: open(exec.fifo) blocks
"""
import os
import sys
# The C module under socket.py: socket.py adds classes and enums none of
# this needs and costs each start ~2.5 ms of imports (selectors, enum).
import _socket

from minirun.errors import ExecError, MinirunError

NAMESPACES_READY = b"namespaces-ready"
CONTINUE = b"continue"
PTY_MASTER = b"pty-master"
CREATED = b"created"
ERROR = b"error"
_MAX = 65536


def channel():
    """(parent_end, child_end); both close on exec."""
    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)


def send(sock, message, fd=None):
    """One message; with `fd`, the file descriptor travels with it as
    SCM_RIGHTS ancillary data (sendmsg(2)): the receiver gets its own fd
    for the same open file."""
    if fd is None:
        sock.send(message)
    else:
        sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                  fd.to_bytes(4, sys.byteorder, signed=True))])


def send_error(sock, message, exit_code=125):
    """Child side: report why the start failed; the parent raises it."""
    try:
        sock.send(ERROR + b" %d " % exit_code + message.encode(errors="replace")[:_MAX - 32])
    except OSError:            # no parent any more (after CREATED): our stderr is all there is
        try:
            os.write(2, f"minirun: {message}\n".encode(errors="replace"))
        except OSError:
            pass


def receive(sock, flags=0):
    """(message, fd or None); message b'' at end-of-file. An ERROR message
    from the other side is raised here as the error it describes."""
    # recvmsg(2) with `flags`: raise_reported_error must not block on a
    # child that is still working
    data, ancillary, _flags, _addr = sock.recvmsg(_MAX, _socket.CMSG_LEN(4), flags)
    fds = [int.from_bytes(payload[:4], sys.byteorder, signed=True)
           for level, kind, payload in ancillary
           if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS]
    if data.startswith(ERROR + b" "):
        _, code, text = data.split(b" ", 2)
        code, text = int(code), text.decode(errors="replace")
        raise ExecError(text, code) if code in (126, 127) else MinirunError(text)
    return data, (fds[0] if fds else None)


def raise_reported_error(sock):
    """Parent side, when its own step failed: if the child has already
    reported an ERROR (and died of it), raise that, the first cause."""
    try:
        receive(sock, _socket.MSG_DONTWAIT)
    except BlockingIOError:
        pass


def expect(sock, wanted):
    """Receive one message and insist that it is `wanted`."""
    data, fd = receive(sock)
    if data != wanted:
        raise MinirunError(f"container start: expected {wanted.decode()!r} from the other side, "
                           f"got {data.decode(errors='replace') or 'end-of-file'!r}")
    return fd


def expect_exec(sock):
    """Parent side: block until execve has happened (end-of-file) or failed."""
    data, _ = receive(sock)
    if data:
        raise MinirunError(f"container start: unexpected message {data!r}")
