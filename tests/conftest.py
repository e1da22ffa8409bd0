"""Fixtures shared by the whole suite, and the leak check every test passes.

The leak check snapshots what a container could leave on the host — mounts,
cgroups, network devices, netfilter rules, processes in other PID namespaces — before each
test and fails the test if anything new remains after it.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINIRUN = [sys.executable, "-m", "minirun"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces and mounts")


def mounts():
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def cgroups():
    """Every cgroup minirun made: <hierarchy>/minirun and what is below it."""
    found = set()
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        if "minirun" in dirpath:
            found.add(dirpath)
        if dirpath.count("/") >= 6:
            dirnames[:] = []
    return found


def net_devices():
    return set(os.listdir("/sys/class/net"))


def netfilter_rules():
    """minirun's nftables rules, by chain, handle and owner."""
    done = subprocess.run(["nft", "-j", "list", "table", "ip", "minirun"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return set()
    import json
    return {f"{r['rule']['chain']}#{r['rule']['handle']} {r['rule'].get('comment', '')}"
            for r in json.loads(done.stdout)["nftables"] if "rule" in r}


def foreign_pid_ns_processes():
    """Processes whose PID namespace is not ours: container processes."""
    ours = os.readlink("/proc/self/ns/pid")
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") != ours:
                    found.add(pid)
            except OSError:
                pass
    return found


def snapshot():
    return {"mounts": mounts(), "cgroups": cgroups(), "network devices": net_devices(),
            "netfilter rules": netfilter_rules(),
            "processes in other PID namespaces": foreign_pid_ns_processes()}


@pytest.fixture(autouse=True)
def no_leaks():
    before = snapshot()
    yield
    deadline = time.monotonic() + 3   # a SIGKILLed container takes a moment to go
    while True:
        after = snapshot()
        leaked = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"the test left behind: {leaked}"


def write_tree(directory, files):
    """Files (name → text) under `directory`, parents made; its path, as a string."""
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return str(directory)


@pytest.fixture(scope="session")
def probes():
    """The C programs of tests/security/probes (attacks, run from inside
    containers) and the tour's chroot escape (examples/escape), compiled
    static so they run in any image."""
    source_dir = os.path.join(ROOT, "tests", "security", "probes")
    sources = [os.path.join(source_dir, s) for s in os.listdir(source_dir)]
    sources.append(os.path.join(ROOT, "examples", "escape", "escape.c"))
    out = tempfile.mkdtemp(prefix="minirun-probes-")
    os.chmod(out, 0o755)
    for source in sources:
        name = os.path.basename(source).removesuffix(".c")
        subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(out, name), source], check=True)
    yield out
    shutil.rmtree(out)


@pytest.fixture(scope="session")
def shared_root():
    """A store with the embedded busybox image, shared by tests that only run it."""
    root = tempfile.mkdtemp(prefix="minirun-test-")
    subprocess.run(MINIRUN + ["--root", root, "images", "-q"], check=True, capture_output=True)
    yield root
    shutil.rmtree(root)


@pytest.fixture
def store_root(tmp_path):
    """A store of the test's own."""
    root = tmp_path / "store"
    root.mkdir()
    return str(root)


class Minirun:
    def __init__(self, root):
        self.root = root

    def __call__(self, *args, input=None, timeout=60, check=None):
        """Run minirun; returns CompletedProcess with text stdout/stderr."""
        proc = subprocess.run(MINIRUN + ["--root", self.root, *args], input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def popen(self, *args, **kwargs):
        return subprocess.Popen(MINIRUN + ["--root", self.root, *args], **kwargs)

    def sh(self, script, *flags, check=0):
        """`minirun run --rm [flags] busybox sh -c script`; returns stdout."""
        return self("run", "--rm", *flags, "busybox", "sh", "-c", script, check=check).stdout


@pytest.fixture
def m(store_root):
    """minirun on a store of the test's own."""
    return Minirun(store_root)


@pytest.fixture
def minirun(shared_root):
    return Minirun(shared_root)
