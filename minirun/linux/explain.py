"""--explain: print each kernel step as it happens, with its man page.

    [explain +12.3ms child   1] unshare(CLONE_NEWNS|CLONE_NEWUTS)         unshare(2)

The time is since minirun's first import of this module; then the side
that made the call (parent, child, monitor) and the numbered step it
belongs to: the parent's steps are those of runtime/start.py, the child's
those of runtime/child.py, so the trace and the code share one numbering.

Enabled by `minirun --explain` or MINIRUN_EXPLAIN=1. The trace goes to the
stderr minirun started with, even after the container's stdio is redirected.
"""
import os
import time

_t0 = time.perf_counter()

_fd = 2 if os.environ.get("MINIRUN_EXPLAIN") == "1" else None


def enable():
    global _fd
    os.environ["MINIRUN_EXPLAIN"] = "1"
    _fd = 2


def enabled():
    return _fd is not None


def keep_stderr():
    """Hold a private copy of stderr so the trace survives dup2 onto fd 2."""
    global _fd
    if _fd is not None:
        _fd = os.dup(2)  # inheritable=False: closed at execve


_side, _step = "parent", "-"


def be(side):
    """From here on, this process's lines are `side`'s: parent, child, monitor."""
    global _side
    _side = side


def enter(number):
    """From here on, the lines belong to step `number` of start.py or child.py."""
    global _step
    _step = number


def step(call, manpage):
    """Print one kernel step: `call` as a C-like string, and its man page."""
    global _fd
    if _fd is not None:
        ms = (time.perf_counter() - _t0) * 1000
        try:
            os.write(_fd, f"[explain +{ms:5.1f}ms {_side:<7} {_step:>2}] {call:<60} "
                          f"{manpage}\n".encode())
        except OSError:      # the reader went away (`| head`): stop tracing, not the cleanup
            _fd = None
