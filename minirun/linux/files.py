"""Files the store keeps (state, configs, names) are written whole or not at
all: into a temporary file beside the real one, then renamed over it —
rename(2) replaces a name in one step, so a crash leaves the old file or the
new one, never half of one. (Its own module: the mount steps in fs.py need
ctypes, and a `minirun ps` that only writes state should not import it.)
"""
import os


def write_atomic(path, data):
    """Write `data` to `path` through a temporary file and rename(2)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
