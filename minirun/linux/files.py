"""Files the store keeps (state, configs, names) are written whole or not at
all: into a temporary file beside the real one, then renamed over it —
rename(2) replaces a name in one step, so a crash leaves the old file or the
new one, never half of one. (Its own module: the mount steps in fs.py need
ctypes, and a `minirun ps` that only writes state should not import it.)

And what the store removes, it removes with remove_tree.
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


def remove_tree(path):
    """rm -rf `path`, as far as it goes (what cannot be removed stays, as
    with shutil.rmtree's ignore_errors). Each directory is opened once and
    its entries are removed relative to that fd, unlinkat(2), so a symlink
    inside is removed, never followed. shutil.rmtree does the same, but
    importing shutil costs every `run --rm` ~2 ms: it loads bz2 and lzma
    for its archive helpers."""
    try:
        for _, dirs, files, fd in os.fwalk(path, topdown=False):
            for name in files:
                _ignoring_errors(os.unlink, name, fd)
            for name in dirs:
                try:
                    os.rmdir(name, dir_fd=fd)
                except NotADirectoryError:          # a symlink to a directory
                    _ignoring_errors(os.unlink, name, fd)
                except OSError:
                    pass
    except OSError:                                 # `path` itself is gone or unreadable
        pass
    _ignoring_errors(os.rmdir, path)


def _ignoring_errors(remove, name, dir_fd=None):
    try:
        remove(name, dir_fd=dir_fd)
    except OSError:
        pass
