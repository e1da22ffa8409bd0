"""The per-container monitor: minirun's analogue of containerd-shim or conmon.

`run -d` and `start` run `monitor.serve(ROOT, FD, FD)` in a Python of its
own, in a session of its own (lifecycle.Monitor). Told which container on
the first FD, the monitor starts it (it is the container's parent), reports
"ok" or the error on the second, then copies the container's stdout and
stderr into containers/<id>/container.log as JSON lines, reaps it, records
its exit status and removes its cgroup. It imports only what that takes, to
stay small: one runs per detached container.
"""
import json
import os
import select
import signal
import time

from minirun.errors import ExecError, MinirunError, exit_now
from minirun.linux import explain
from minirun.linux.process import close_inherited_fds
from minirun.image.store import Store
from minirun.runtime import container, lifecycle, state as statefile
from minirun.runtime.start import launch, wait_exit_status


def _report(fd, text):
    """Tell the client how the start went. The client may be gone (killed
    by its user): the container is ours from here, and carries on."""
    if fd is not None:
        try:
            os.write(fd, text.encode())
        except OSError:
            pass
        os.close(fd)


def serve(root, given_fd, report_fd):
    """The monitor's life: wait, imports done, for the id of the container
    to start (lifecycle.Monitor writes it once the container exists; end-of-
    file if it never will), run it, and end without Python's shutdown (a
    client's `stop` or `wait` waits for this process to exit)."""
    close_inherited_fds(keep=[int(given_fd), int(report_fd)])   # the client's caller's files
    with os.fdopen(int(given_fd)) as f:
        cid = f.readline().strip()
    if cid:
        main(root, cid, int(report_fd))
    exit_now(0)


def main(root, cid, report_fd):
    explain.be("monitor")                  # the parent's steps, taken by the monitor
    os.set_inheritable(report_fd, False)   # else the container would hold it open
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)    # a vanished client is not our end
    bundle = os.path.join(Store(root).containers, cid)
    try:
        spec = container.load_spec(bundle)
        lifecycle.prepare_start(root, spec)
    except (MinirunError, OSError) as e:
        lifecycle._start_failed(bundle)
        return _report(report_fd, f"error 125 {e}")
    lifecycle._claim(bundle, cid)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    cgroup = lifecycle.cgroup_driver()
    try:
        running = launch(spec, cgroup, (None, out_w, err_w))  # stdin: /dev/null
    except ExecError as e:
        lifecycle._start_failed(bundle)
        return _report(report_fd, f"error {e.exit_code} {e}")
    except MinirunError as e:
        lifecycle._start_failed(bundle)
        return _report(report_fd, f"error 125 {e}")
    finally:
        os.close(out_w)
        os.close(err_w)
    lifecycle.record_running(bundle, running)
    _report(report_fd, "ok\n")
    sources = {out_r: "stdout", err_r: "stderr"}
    if running.master is not None:
        sources = {running.master: "stdout"}
        os.close(out_r)
        os.close(err_r)
    copy_to_log(sources, os.path.join(bundle, "container.log"))
    code = wait_exit_status(running.pid)
    lifecycle.record_exit(bundle, spec, code, cgroup)


class LogFile:
    """container.log, appended to; when a write fails (a full disk), the
    lines are dropped and the copying goes on: the container must never
    block on its output, nor die of it."""
    def __init__(self, path):
        try:
            self.f = open(path, "a")
        except OSError:
            self.f = None

    def write(self, text):
        if self.f is not None:
            try:
                self.f.write(text)
            except OSError:
                self.close()

    def flush(self):
        if self.f is not None:
            try:
                self.f.flush()
            except OSError:
                self.close()

    def close(self):
        if self.f is not None:
            try:
                self.f.close()
            except OSError:
                pass
            self.f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def copy_to_log(sources, path):
    """Until every source is at end-of-file: one JSON line per line of output."""
    partial = {fd: b"" for fd in sources}
    log = LogFile(path)
    with log:
        while partial:
            ready, _, _ = select.select(list(partial), [], [])
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:      # a pty's master reads EIO once the slave side closes
                    data = b""
                lines = (partial[fd] + data).split(b"\n")
                partial[fd] = lines.pop() if data else b""
                if not data and lines == [b""]:
                    lines = []
                for line in lines:
                    entry = {"log": line.decode(errors="replace") + "\n", "stream": sources[fd],
                             "time": statefile.iso(time.time())}
                    log.write(json.dumps(entry) + "\n")
                log.flush()
                if not data:
                    del partial[fd]
                    os.close(fd)

