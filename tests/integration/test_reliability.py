"""Faults a reliability tester throws at minirun: killed clients, a full
disk, damaged state, empty references. Nothing may be lost or wedged, and
every failure is one line."""
import json
import os
import random
import subprocess
import time

import pytest

from tests.conftest import Minirun, needs_root

pytestmark = needs_root


@pytest.fixture
def small(tmp_path):
    """A store on a 40 MB tmpfs: a disk that fills."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], check=True)
    try:
        m = Minirun(str(mnt / "store"))
        m("images", "-q", check=0)
        yield m
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


# --- a killed client ---------------------------------------------------------------------

def test_a_killed_client_never_kills_a_detached_container(m):
    rng = random.Random(13)
    for trial in range(24):
        proc = m.popen("run", "-d", "--network", "none", "busybox", "sleep", "60",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc.wait()
    time.sleep(0.5)                         # a monitor still starting its container
    statuses = {cid: json.loads(m("inspect", cid, check=0).stdout)[0]["State"]["Status"]
                for cid in m("ps", "-a", "-q", check=0).stdout.split()}
    try:
        assert "exited" not in statuses.values(), statuses      # none died with its client
        assert "running" in statuses.values()                   # some got that far
    finally:
        for cid in statuses:
            m("rm", "-f", cid, check=0)


# --- a full disk --------------------------------------------------------------------------

FILL = "dd if=/dev/zero of=/fill bs=1M >/dev/null 2>&1; echo after; exit 3"


def test_a_container_that_fills_the_disk_exits_with_its_own_status(small):
    out = small("run", "--rm", "busybox", "sh", "-c", FILL)
    assert out.returncode == 3 and out.stdout == "after\n", out
    assert small("ps", "-a", "-q", check=0).stdout == ""          # --rm removed it
    cid = small("run", "-d", "busybox", "sh", "-c", FILL + " ", check=0).stdout.strip()
    assert small("wait", cid, timeout=30, check=0).stdout.strip() == "3"
    for command in (("ps",), ("ps", "-a"), ("logs", cid)):
        small(*command, check=0)
    small("container", "prune", check=0)
    assert small("run", "--rm", "busybox", "echo", "ok", check=0).stdout == "ok\n"


def test_a_full_disk_is_one_line_naming_the_store(small):
    filler = os.path.join(os.path.dirname(small.root), "filler")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
    try:
        out = small("run", "--rm", "busybox", "true")
        assert out.returncode == 125 and "No space left on device" in out.stderr
        assert small.root in out.stderr and len(out.stderr.splitlines()) == 1
        small("ps", "-a", check=0)
        assert os.listdir(os.path.join(small.root, "containers")) == []
        assert os.listdir(os.path.join(small.root, "tmp")) == []
    finally:
        os.unlink(filler)


def test_a_build_out_of_space_names_step_and_path_and_stores_nothing(small, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "big").write_bytes(os.urandom(45 << 20))
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=1\nCOPY big /big\n")
    before = sorted(os.listdir(os.path.join(small.root, "layers")))
    out = small("build", "-t", "full", str(ctx))
    assert out.returncode != 0
    assert "Dockerfile:3: COPY: no space left on device writing" in out.stderr, out.stderr
    assert small.root in out.stderr
    assert sorted(os.listdir(os.path.join(small.root, "layers"))) == before
    assert len(os.listdir(os.path.join(small.root, "cache"))) == 1       # ENV's, and no more
    assert os.listdir(os.path.join(small.root, "tmp")) == []


# --- damaged state -------------------------------------------------------------------------

DAMAGE = {
    "truncated": lambda path: open(path, "r+").truncate(20),
    "empty": lambda path: open(path, "w").close(),
    "missing keys": lambda path: open(path, "w").write('{"id": "x"}'),
    "gone": os.unlink,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_container_is_listed_and_removable(m, damage):
    stopped = m("create", "--network", "none", "busybox", "true", check=0).stdout.strip()
    running = m("run", "-d", "--network", "none", "busybox", "sleep", "60", check=0).stdout.strip()
    for cid in (stopped, running):
        DAMAGE[damage](os.path.join(m.root, "containers", cid, "state.json"))
    listing = m("ps", "-a", check=0).stdout
    assert listing.count("Damaged") == 2
    out = m("start", stopped)
    assert out.returncode == 125 and "damaged" in out.stderr and "rm -f" in out.stderr
    assert m("rm", running).returncode != 0          # it may still run
    m("rm", "-f", running, check=0)                  # stops what it runs
    m("container", "prune", check=0)
    assert m("ps", "-a", "-q", check=0).stdout == ""


def test_a_damaged_config_is_one_line(m):
    cid = m("create", "--network", "none", "busybox", "true", check=0).stdout.strip()
    with open(os.path.join(m.root, "containers", cid, "config.json"), "w") as f:
        f.write("{")
    out = m("start", cid)
    assert out.returncode == 125 and "damaged" in out.stderr and len(out.stderr.splitlines()) == 1
    m("rm", cid, check=0)


def test_logs_skip_a_truncated_line(m):
    cid = m("run", "-d", "--network", "none", "busybox", "sh", "-c", "echo one; echo two",
            check=0).stdout.strip()
    m("wait", cid, check=0)
    log = os.path.join(m.root, "containers", cid, "container.log")
    with open(log, "a") as f:
        f.write('{"log": "half a li')
    assert m("logs", cid, check=0).stdout == "one\ntwo\n"
    m("rm", cid, check=0)


# --- references and names ---------------------------------------------------------------

@pytest.mark.parametrize("verb", ["rm", "stop", "start", "kill", "inspect", "logs"])
def test_an_empty_reference_matches_nothing(m, verb):
    cid = m("create", "--network", "none", "busybox", "true", check=0).stdout.strip()
    out = m(verb, "")
    assert out.returncode != 0 and "no such container" in out.stderr
    assert m("ps", "-a", "-q", "--no-trunc", check=0).stdout.split() == [cid]
    m("rm", cid, check=0)


def test_unnamed_containers_get_generated_names(m):
    cid = m("create", "--network", "none", "busybox", "true", check=0).stdout.strip()
    name = json.loads(m("inspect", cid, check=0).stdout)[0]["Name"]
    adjective, _, surname = name.lstrip("/").partition("_")
    assert adjective and surname
    m("rm", name.lstrip("/"), check=0)
    assert m("ps", "-a", "-q", check=0).stdout == ""


@pytest.mark.parametrize("kind", ["symlink", "directory", "device"])
def test_save_never_replaces_what_is_not_a_regular_file(m, tmp_path, kind):
    target = tmp_path / "out.tar"
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    if kind == "symlink":
        os.symlink(victim, target)
    elif kind == "directory":
        target.mkdir()
    else:
        os.mknod(target, 0o600 | 0o020000, os.makedev(1, 3))
    out = m("save", "-o", str(target), "busybox")
    assert out.returncode == 125 and "not a regular file" in out.stderr
    assert victim.read_text() == "keep me\n"
    assert (os.path.islink(target) if kind == "symlink" else
            target.is_dir() if kind == "directory" else target.is_char_device())


# --- ports, bridges and start errors ---------------------------------------------------

def test_a_dead_containers_port_is_free_at_once(m):
    first = m("run", "-d", "-p", "18181:80", "busybox", "nc", "-l", "-p", "80", check=0).stdout.strip()
    m("kill", first, check=0)
    second = m("run", "-d", "-p", "18181:80", "busybox", "sleep", "30")
    assert second.returncode == 0, second.stderr
    out = m("start", first)
    assert out.returncode == 125 and "already published" in out.stderr
    m("rm", "-f", first, second.stdout.strip(), check=0)


def test_a_client_killed_with_its_attached_container_leaves_it_dead_not_running(m):
    proc = m.popen("run", "--name", "orphan", "--network", "none", "busybox", "sleep", "60",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def status():
        out = m("inspect", "orphan")
        return json.loads(out.stdout)[0]["State"]["Status"] if out.returncode == 0 else None

    deadline = time.monotonic() + 10
    while status() != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    time.sleep(0.3)
    # its PID 1 died with the client; a host init that never reaps it
    # changes nothing: a zombie is dead
    state = json.loads(m("inspect", "orphan", check=0).stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    m("rm", "orphan", check=0)


def test_another_stores_prune_keeps_a_bridge_in_use(m, tmp_path):
    other = Minirun(str(tmp_path / "other"))
    cid = m("run", "-d", "busybox", "sleep", "30", check=0).stdout.strip()
    try:
        other("run", "--rm", "busybox", "true", check=0)
        other("network", "prune", check=0)
        assert os.path.exists("/sys/class/net/minirun0")
        assert m("exec", cid, "ping", "-c1", "-W2", "10.200.0.1").returncode == 0
    finally:
        m("rm", "-f", cid, check=0)


@pytest.mark.parametrize("flags, message", [
    (("-u", "4294967296"), "out of range"),
    (("--env-file", "NUL"), "NUL byte"),
])
def test_start_errors_are_one_line_and_the_container_never_ran(m, tmp_path, flags, message):
    if "NUL" in flags:
        (tmp_path / "nul.env").write_bytes(b"A=b\0c\n")
        flags = ("--env-file", str(tmp_path / "nul.env"))
    out = m("run", "--name", "failed", *flags, "busybox", "true")
    assert out.returncode == 125 and message in out.stderr and len(out.stderr.splitlines()) == 1
    assert m("ps", "-a", "-q", check=0).stdout == ""


def test_run_rm_joining_a_stopped_containers_network_leaves_nothing(m):
    m("create", "--name", "stopped", "busybox", "true", check=0)
    for detach in ((), ("-d",)):
        out = m("run", "--rm", *detach, "--network", "container:stopped", "busybox", "true")
        assert out.returncode == 125 and "not running" in out.stderr
    assert m("ps", "-a", "-q", check=0).stdout.split() == [
        m("ps", "-a", "-q", check=0).stdout.split()[0]]
    m("rm", "stopped", check=0)


def test_i_t_with_a_pipe_is_refused_not_wedged(m):
    out = m("run", "--rm", "-i", "-t", "busybox", "cat", input="a" * 20000, timeout=20)
    assert out.returncode == 125 and "not a TTY" in out.stderr


def test_logs_follow_waits_for_a_line_being_written(m):
    cid = m("run", "-d", "--network", "none", "busybox", "sh", "-c", "echo start; sleep 2",
            check=0).stdout.strip()
    log = os.path.join(m.root, "containers", cid, "container.log")
    follower = m.popen("logs", "-f", cid, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    with open(log, "a") as f:           # a writer caught mid-line...
        f.write('{"log": "half ')
        f.flush()
        time.sleep(0.3)
        f.write('and whole\\n", "stream": "stdout", "time": "x"}\n')   # ...and its end
    out, err = follower.communicate(timeout=20)
    assert out == "start\nhalf and whole\n" and err == ""
    m("rm", cid, check=0)


def test_two_stores_on_the_default_bridge_never_share_an_address(m, tmp_path):
    other = Minirun(str(tmp_path / "other"))
    first = m("run", "-d", "busybox", "sleep", "30", check=0).stdout.strip()
    second = other("run", "-d", "busybox", "sleep", "30", check=0).stdout.strip()
    try:
        a = json.loads(m("inspect", first, check=0).stdout)[0]["NetworkSettings"]["IPAddress"]
        b = json.loads(other("inspect", second, check=0).stdout)[0]["NetworkSettings"]["IPAddress"]
        assert a != b
        assert other("exec", second, "ping", "-c1", "-W2", a).returncode == 0
    finally:
        m("rm", "-f", first, check=0)
        other("rm", "-f", second, check=0)
