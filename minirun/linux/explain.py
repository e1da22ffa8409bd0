"""--explain: print each kernel step as it happens, with its man page.

    [explain +12.3ms] unshare(CLONE_NEWNS|CLONE_NEWUTS)         unshare(2)

The time is since minirun's first import of this module.

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


def step(call, manpage):
    """Print one kernel step: `call` as a C-like string, and its man page."""
    global _fd
    if _fd is not None:
        ms = (time.perf_counter() - _t0) * 1000
        try:
            os.write(_fd, f"[explain +{ms:5.1f}ms] {call:<60} {manpage}\n".encode())
        except OSError:      # the reader went away (`| head`): stop tracing, not the cleanup
            _fd = None
