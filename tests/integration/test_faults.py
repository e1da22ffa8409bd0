"""Fault injection: the CLI SIGKILLed at random points of its work, over and
over (seeded, so a failure can be replayed). Afterwards the next commands
work, and the leak check finds nothing: no mount, cgroup, device, rule or
process is left behind."""
import os
import random
import signal
import subprocess
import time

import pytest

from tests.conftest import Minirun, needs_root

pytestmark = needs_root
TRIALS = 20


@pytest.fixture
def m(store_root):
    m = Minirun(store_root)
    m("images", "-q", check=0)
    return m


def kill_midway(m, rng, *args, most=0.8):
    """Start `minirun ARGS`, SIGKILL it after a random moment (if still going)."""
    proc = m.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.02, most))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def next_commands_work(m):
    """What a user types next: it must work, and clean up after the killed."""
    m("ps", "-a", check=0)
    for cid in m("ps", "-a", "-q", check=0).stdout.split():
        m("rm", "-f", cid, check=0)
    m("network", "prune", check=0)
    assert m("run", "--rm", "busybox", "echo", "ok", check=0).stdout == "ok\n"
    m("ps", "-a", check=0)


@pytest.mark.parametrize("seed", [1])
def test_run_rm_killed_anywhere(m, seed):
    rng = random.Random(seed)
    for _ in range(TRIALS):
        kill_midway(m, rng, "run", "--rm", "busybox", "sleep", "5")
    next_commands_work(m)
    assert m("ps", "-a", "-q", check=0).stdout == ""


def test_run_d_killed_anywhere(m):
    rng = random.Random(2)
    for _ in range(TRIALS):
        kill_midway(m, rng, "run", "-d", "busybox", "sleep", "30")
    time.sleep(0.5)
    next_commands_work(m)


def test_build_killed_anywhere(m, tmp_path):
    rng = random.Random(3)
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN sleep 0.3 && echo a > /a\nCOPY Dockerfile /\n")
    for _ in range(TRIALS):
        kill_midway(m, rng, "build", "--no-cache", "-t", "killed", str(tmp_path), most=1.2)
    m("build", "-q", "-t", "built", str(tmp_path), check=0)
    assert os.listdir(os.path.join(m.root, "tmp")) == []
    next_commands_work(m)


def test_load_killed_anywhere(m, tmp_path):
    rng = random.Random(4)
    archive = tmp_path / "busybox.tar"
    m("save", "-o", str(archive), "busybox", check=0)
    other = Minirun(str(tmp_path / "other"))
    for _ in range(TRIALS):
        kill_midway(other, rng, "load", "-i", str(archive), most=0.6)
    assert "Loaded image" in other("load", "-i", str(archive), check=0).stdout
    other("image", "prune", check=0)
    assert os.listdir(os.path.join(other.root, "tmp")) == []
    assert other("run", "--rm", "--network", "none", "busybox", "true").returncode == 0


def test_rm_f_killed_anywhere(m):
    rng = random.Random(5)
    for _ in range(TRIALS):
        cid = m("run", "-d", "busybox", "sleep", "30", check=0).stdout.strip()
        kill_midway(m, rng, "rm", "-f", cid, most=0.4)
    next_commands_work(m)
    assert m("ps", "-a", "-q", check=0).stdout == ""


def test_network_rm_killed_anywhere(m):
    rng = random.Random(6)
    for n in range(TRIALS):
        m("network", "create", f"net{n}", check=0)
        cid = m("run", "-d", "--network", f"net{n}", "busybox", "true", check=0).stdout.strip()
        m("wait", cid, check=0)
        m("rm", cid, check=0)
        m("run", "--rm", "--network", f"net{n}", "busybox", "true", check=0)
        kill_midway(m, rng, "network", "rm", f"net{n}", most=0.4)
    for line in m("network", "ls", check=0).stdout.splitlines()[1:]:
        name = line.split()[1] if len(line.split()) > 1 else ""
        if name.startswith("net"):
            m("network", "rm", name, check=0)
    next_commands_work(m)
