"""A container's state on disk: containers/<id>/state.json, changed only
under the container's lock (flock) and written whole by rename, so a
SIGKILL at any moment leaves either the old state or the new one.

    created → running → exited        (rm removes the directory)

The file says what minirun last knew; status() says what is true now: a
container recorded as running whose PID 1 is gone has exited, even if
nobody was left to write it down.
"""
import errno
import fcntl
import json
import os
import time
from contextlib import contextmanager

from minirun.linux.files import write_atomic
from minirun.linux.process import process_start_time


def alive(pid, start_time):
    return pid is not None and start_time is not None and process_start_time(pid) == start_time


STATUSES = ("created", "starting", "running", "exited")


def read(bundle):
    """The recorded state; ValueError if state.json is not one minirun wrote."""
    with open(os.path.join(bundle, "state.json"), "rb") as f:   # bytes: no text layer to build
        state = json.loads(f.read())
    if not isinstance(state, dict) or state.get("status") not in STATUSES \
            or not isinstance(state.get("created"), (int, float)) or not isinstance(state.get("id"), str):
        raise ValueError("missing or wrong keys")
    return state


def damaged(cid, bundle, error):
    """What we say of a container whose state.json cannot be read: it is
    listed, it can be removed, and nothing else is done with it."""
    try:
        created = os.stat(bundle).st_mtime
    except OSError:
        created = 0
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return {"id": cid, "status": "damaged", "created": created, "name": "", "image": "",
            "command": [], "damage": f"state.json: {reason}"}


@contextmanager
def locked(bundle):
    with open(os.path.join(bundle, "lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def update(bundle, **changes):
    with locked(bundle):
        state = read(bundle)
        state.update(changes)
        _write(bundle, state)
        return state


def _write(bundle, state):
    """Whole, by rename; on a full disk, in place instead: a state this
    small fits in the block the file already has, and the exit status of a
    container that filled the disk is worth recording."""
    path = os.path.join(bundle, "state.json")
    text = json.dumps(state, indent=1)
    try:
        write_atomic(path, text)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        with open(path, "r+") as f:
            f.write(text)
            f.truncate()


def write_new(bundle, state):
    _write(bundle, state)


def status(state):
    """(status, exit_code) as things are now."""
    recorded = state["status"]
    if recorded == "damaged":
        return "damaged", None
    if recorded == "starting" and alive(state.get("owner_pid"), state.get("owner_start")):
        return "created", None          # its supervisor is still starting it
    if recorded == "starting" or (recorded == "running"
                                  and not alive(state.get("pid"), state.get("pid_start"))):
        # Its supervisor died without writing the end; the container died
        # with it (SIGKILL by PR_SET_PDEATHSIG), hence 137.
        return "exited", state.get("exit_code") if state.get("exit_code") is not None else 137
    return recorded, state.get("exit_code")


def now():
    return time.time()


def iso(t):
    if not t:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def ago(t):
    """'3 seconds', '2 minutes'... as `docker ps` says it."""
    s = max(0, int(time.time() - t))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size:
            n = s // size
            return f"{n} {unit}{'s' if n > 1 else ''}" if n > 1 else f"About a{'n' if unit == 'hour' else ''} {unit}"
    return "Less than a second" if s < 1 else f"{s} second{'s' if s > 1 else ''}"
