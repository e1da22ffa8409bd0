"""create/start/detach/exec/logs/stop/kill/rm and cgroup limits, on the real kernel."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import needs_root

pytestmark = needs_root


@pytest.fixture
def mr(store_root, shared_root):
    """A store of the test's own (containers are listed by ps), sharing the
    busybox layer with the session's store to save building it again."""
    from conftest import Minirun
    for name in ("layers", "images", "repositories.json"):
        src = os.path.join(shared_root, name)
        dst = os.path.join(store_root, name)
        if os.path.isdir(src):
            subprocess.run(["cp", "-a", src, dst], check=True)
        else:
            subprocess.run(["cp", src, dst], check=True)
    m = Minirun(store_root)
    yield m
    for cid in m("ps", "-a", "-q").stdout.split():
        m("rm", "-f", cid)


def detached(mr, *args):
    proc = mr("run", "-d", *args, check=0)
    cid = proc.stdout.strip()
    assert len(cid) == 64, proc
    return cid


def test_create_then_start_attached(mr):
    cid = mr("create", "--name", "c1", "busybox", "sh", "-c", "echo hi; exit 3", check=0).stdout.strip()
    assert "Created" in mr("ps", "-a").stdout
    assert "c1" not in mr("ps").stdout            # not running: only with -a
    proc = mr("start", "-a", "c1")
    assert (proc.returncode, proc.stdout) == (3, "hi\n")
    assert json.loads(mr("inspect", cid[:8], check=0).stdout)[0]["State"]["ExitCode"] == 3


def test_detached_run_logs_wait_and_status(mr):
    cid = detached(mr, "--name", "d1", "busybox", "sh", "-c",
                   "echo out; echo err >&2; sleep 0.3; echo late; exit 4")
    assert "Up " in mr("ps", check=0).stdout
    assert mr("wait", "d1", check=0).stdout == "4\n"
    logs = mr("logs", "d1", check=0)
    assert (logs.stdout, logs.stderr) == ("out\nlate\n", "err\n")
    assert mr("logs", "--tail", "1", cid, check=0).stdout == "late\n"
    assert "Exited (4)" in mr("ps", "-a", check=0).stdout
    state = json.loads(mr("inspect", "d1", check=0).stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 4 and not state["OOMKilled"]


def test_logs_follow_ends_with_the_container(mr):
    detached(mr, "--name", "f1", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done")
    assert mr("logs", "-f", "f1", check=0, timeout=20).stdout == "1\n2\n3\n"


def test_exec_joins_the_running_container(mr):
    detached(mr, "--name", "e1", "-e", "FROM_RUN=yes", "busybox", "sleep", "30")
    out = mr("exec", "-e", "EXTRA=1", "-w", "/tmp", "e1", "sh", "-c",
             "echo $FROM_RUN $EXTRA; pwd; cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname", check=0).stdout
    lines = out.split("\n")
    assert lines[0] == "yes 1" and lines[1] == "/tmp"
    assert lines[2].strip() == "sleep 30"           # the container's PID 1 is visible: same PID namespace
    assert mr("exec", "-u", "nobody", "e1", "id", "-u", check=0).stdout == "65534\n"
    assert mr("exec", "e1", "sh", "-c", "exit 9").returncode == 9
    assert mr("exec", "-t", "e1", "tty", check=0).stdout.strip().startswith("/dev/pts/")
    proc = mr("exec", "e1", "nosuch")
    assert proc.returncode == 127 and "executable file not found" in proc.stderr


def test_kill_stop_restart_rm(mr):
    detached(mr, "--name", "k1", "busybox", "sleep", "30")
    mr("kill", "k1", check=0)
    assert mr("wait", "k1", check=0).stdout == "137\n"      # SIGKILL by default, as Docker

    detached(mr, "--name", "k2", "busybox", "sh", "-c", "trap 'exit 5' TERM; while :; do sleep 0.05; done")
    time.sleep(0.2)
    mr("kill", "-s", "TERM", "k2", check=0)
    assert mr("wait", "k2", check=0).stdout == "5\n"

    detached(mr, "--name", "s1", "busybox", "sleep", "30")   # PID 1 ignores SIGTERM
    t = time.monotonic()
    mr("stop", "-t", "1", "s1", check=0)
    assert 0.9 < time.monotonic() - t < 8
    assert "Exited (137)" in mr("ps", "-a", check=0).stdout

    mr("restart", "-t", "0", "s1", check=0)
    assert "Up " in mr("ps", check=0).stdout
    proc = mr("rm", "s1")
    assert proc.returncode == 125 and "stop it first or use rm -f" in proc.stderr
    mr("rm", "-f", "s1", check=0)
    assert "s1" not in mr("ps", "-a", check=0).stdout


def test_top_and_stats(mr):
    cid = detached(mr, "--name", "t1", "busybox", "sh", "-c", "sleep 30 & sleep 31")
    time.sleep(0.2)
    out = mr("top", "t1", check=0).stdout
    assert "sleep 30" in out and "sleep 31" in out
    out = mr("stats", "--no-stream", "t1", check=0).stdout
    assert cid[:12] in out and out.split()[-1] == "2"      # sh became "sleep 31" by exec


def test_prune_removes_stopped_only(mr):
    mr("run", "--name", "p1", "busybox", "true", check=0)
    detached(mr, "--name", "p2", "busybox", "sleep", "30")
    mr("container", "prune", check=0)
    names = mr("ps", "-a", check=0).stdout
    assert "p1" not in names and "p2" in names


def test_killed_monitor_leaves_the_truth_and_rm_cleans(mr):
    cid = detached(mr, "--name", "m1", "busybox", "sleep", "30")
    with open(os.path.join(mr.root, "containers", cid, "state.json")) as f:
        monitor = json.load(f)["owner_pid"]          # the process that started it
    with open(f"/proc/{monitor}/cmdline") as f:
        assert "minirun.runtime.monitor" in f.read()
    os.kill(monitor, signal.SIGKILL)
    deadline = time.time() + 5
    while "Up " in mr("ps", "-a", check=0).stdout and time.time() < deadline:
        time.sleep(0.1)
    assert "Exited (137)" in mr("ps", "-a", check=0).stdout
    mr("rm", "-f", "m1", check=0)
    assert not os.path.exists(os.path.join(mr.root, "containers", cid))


def test_run_d_returns_and_holds_none_of_its_callers_files(mr):
    # `out=$(minirun run -d ... 3>&1)`: the shell reads until every writer of
    # its pipe is gone; a monitor that kept the pipe would hang it for as
    # long as the container runs.
    r, w = os.pipe()
    os.set_inheritable(w, True)
    client = mr.popen("run", "-d", "--name", "fds", "busybox", "sleep", "30", pass_fds=[w],
                      stdout=subprocess.DEVNULL)
    os.close(w)
    assert client.wait(timeout=30) == 0
    try:
        import select
        assert select.select([r], [], [], 5)[0], "a writer of the caller's pipe is still open"
        assert os.read(r, 1) == b""
        assert "Up " in mr("ps", check=0).stdout
    finally:
        os.close(r)
        mr("rm", "-f", "fds", check=0)


@pytest.mark.parametrize("args, message", [
    (["start", "nosuch"], "no such container: nosuch"),
    (["exec", "nosuch", "true"], "no such container: nosuch"),
    (["run", "-m", "lots", "busybox", "true"], "--memory lots: not a size"),
    (["run", "--cpus", "999", "busybox", "true"], "range of CPUs is from 0.01"),
    (["kill", "-s", "NOPE", "x"], "invalid signal: NOPE"),
])
def test_bad_input_is_one_line_and_changes_nothing(mr, args, message):
    before = sorted(os.listdir(os.path.join(mr.root, "containers"))) if os.path.isdir(
        os.path.join(mr.root, "containers")) else []
    proc = mr(*args)
    assert proc.returncode != 0 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    after = sorted(os.listdir(os.path.join(mr.root, "containers"))) if os.path.isdir(
        os.path.join(mr.root, "containers")) else []
    assert before == after


def test_state_errors(mr):
    detached(mr, "--name", "n1", "busybox", "sleep", "30")
    proc = mr("run", "--name", "n1", "busybox", "true")
    assert proc.returncode == 125 and 'name "n1" is already in use' in proc.stderr
    proc = mr("start", "n1")
    assert proc.returncode == 125 and "already running" in proc.stderr
    mr("run", "--name", "n2", "busybox", "true", check=0)
    proc = mr("exec", "n2", "true")
    assert proc.returncode == 125 and "is not running" in proc.stderr


# --- cgroups --------------------------------------------------------------------------

def test_container_sees_its_own_cgroup_as_root(mr):
    out = mr("run", "--rm", "busybox", "cat", "/proc/self/cgroup", check=0).stdout
    assert all(line.endswith(":/") for line in out.split())
    assert "memory" in mr("run", "--rm", "busybox", "ls", "/sys/fs/cgroup", check=0).stdout


def test_memory_limit_kills_with_137_and_oomkilled(mr):
    proc = mr("run", "--name", "oom", "-m", "16m", "busybox", "sh", "-c",
              'x=a; while true; do x="$x$x"; done')
    assert proc.returncode == 137
    assert json.loads(mr("inspect", "oom", check=0).stdout)[0]["State"]["OOMKilled"] is True


def test_limits_are_visible_inside(mr):
    from minirun.linux import cgroups
    files = ("/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max"
             if cgroups.detect().version == 1 else "/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
    out = mr("run", "--rm", "-m", "64m", "--pids-limit", "20", "busybox", "cat", *files.split(),
             check=0).stdout.split()
    assert out == [str(64 << 20), "20"]


def test_blkio_weight_where_the_host_allows_it(mr):
    from minirun.linux import cgroups
    cg = cgroups.detect()
    supported = cg.version == 2 and "io" in cg.available() or cg.version == 1 and os.path.exists(
        os.path.join(cg.mounts.get("blkio", "/nonexistent"), "blkio.weight"))
    proc = mr("run", "--rm", "--blkio-weight", "500", "busybox", "true")
    if supported:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 125 and "blkio.weight" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_fork_bomb_is_contained_by_pids_limit(mr):
    # After the bomb the shell uses builtins only: ash exits when it cannot
    # fork, and `sleep` would fork. read -t on an empty FIFO waits one second.
    proc = mr("run", "--rm", "--pids-limit", "16", "busybox", "sh", "-c",
              "mkfifo /tmp/f; exec 3<>/tmp/f; bomb() { bomb | bomb & }; bomb; "
              "read -t 1 x <&3; echo survived", timeout=60)
    assert "can't fork" in proc.stderr or "Resource temporarily unavailable" in proc.stderr
    assert "survived" in proc.stdout


def test_half_a_cpu_gets_about_half_a_core(mr):
    cid = detached(mr, "--cpus", "0.5", "busybox", "sh", "-c", "while :; do :; done")
    time.sleep(0.3)
    usage = f"/sys/fs/cgroup/cpuacct/minirun/{cid}/cpuacct.usage"
    if not os.path.exists(usage):
        usage = f"/sys/fs/cgroup/minirun/{cid}/cpu.stat"
    def cpu_ns():
        text = open(usage).read()
        return int(text) if text.strip().isdigit() else int(text.split()[1]) * 1000
    a, t = cpu_ns(), time.monotonic()
    time.sleep(2)
    share = (cpu_ns() - a) / ((time.monotonic() - t) * 1e9)
    assert 0.35 < share < 0.65, share
