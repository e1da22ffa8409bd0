"""Both cgroup implementations over a temporary directory laid out like
cgroupfs, and the probe that picks one from a host's mount table."""
import os

import pytest

from minirun.linux import cgroups
from minirun.runtime.options import RunOptions, parse_resources, parse_size
from minirun.errors import UsageError
from minirun.runtime.spec import Resources


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


def v2_with_c1(root, controllers, subtree):
    """A cgroup2 root whose parent offers `controllers` and has turned on
    `subtree`, with the container cgroup c1 made in it."""
    write(f"{root}/cgroup.controllers", controllers)
    write(f"{root}/cgroup.subtree_control", subtree)
    cg = cgroups.CgroupV2(root)
    cg.create("c1")
    return cg


LIMITS = Resources(memory=64 << 20, memory_swap=128 << 20, cpu_quota=50_000, cpu_shares=512,
                   cpuset_cpus="0", pids_limit=100, blkio_weight=500,
                   devices=None)    # device rules need the real kernel: tests/security


def test_v2_enables_controllers_and_writes_v2_files(tmp_path):
    root = str(tmp_path)
    cg = v2_with_c1(root, "cpuset cpu io memory pids hugetlb", "memory")
    # the host level gains what was missing; the minirun level gets all five
    assert read(f"{root}/cgroup.subtree_control") == "+cpu +cpuset +pids +io"
    assert read(f"{root}/minirun/cgroup.subtree_control") == "+cpu +cpuset +memory +pids +io"
    write(f"{root}/minirun/c1/memory.swap.max", "max")
    cg.apply("c1", LIMITS)
    p = f"{root}/minirun/c1"
    assert read(f"{p}/memory.max") == str(64 << 20)
    assert read(f"{p}/memory.swap.max") == str(64 << 20)      # memory-swap counts memory too
    assert read(f"{p}/cpu.max") == "50000 100000"
    assert read(f"{p}/cpu.weight") == str(cgroups.shares_to_weight(512))
    assert read(f"{p}/cpuset.cpus") == "0"
    assert read(f"{p}/pids.max") == "100"
    assert read(f"{p}/io.weight") == f"default {cgroups.blkio_to_io_weight(500)}"


def test_v2_reads_oom_and_stats(tmp_path):
    cg = cgroups.CgroupV2(str(tmp_path))
    p = f"{tmp_path}/minirun/c1"
    write(f"{p}/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert not cg.oom_killed("c1")
    write(f"{p}/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_killed("c1")
    write(f"{p}/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    write(f"{p}/memory.current", "4096\n")
    write(f"{p}/memory.max", "max\n")
    write(f"{p}/pids.current", "3\n")
    assert cg.stats("c1") == {"cpu_ns": 1_500_000, "memory": 4096, "memory_limit": None, "pids": 3}


def test_weight_conversions_match_runc():
    assert cgroups.shares_to_weight(1024) == 39
    assert cgroups.shares_to_weight(2) == 1 and cgroups.shares_to_weight(262144) == 10000
    assert cgroups.blkio_to_io_weight(10) == 1 and cgroups.blkio_to_io_weight(1000) == 10000


def test_v1_writes_one_file_per_controller_hierarchy(tmp_path):
    mounts = {c: f"{tmp_path}/{c}" for c in ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio")}
    write(f"{tmp_path}/cpuset/cpuset.cpus", "0-1")
    write(f"{tmp_path}/cpuset/cpuset.mems", "0")
    cg = cgroups.CgroupV1(mounts)
    cg.create("c1")
    assert read(f"{tmp_path}/cpuset/minirun/c1/cpuset.cpus") == "0-1"   # copied from the parent
    write(f"{tmp_path}/memory/minirun/c1/memory.memsw.limit_in_bytes", "")
    write(f"{tmp_path}/blkio/minirun/c1/blkio.weight", "")
    cg.apply("c1", LIMITS)
    assert read(f"{tmp_path}/memory/minirun/c1/memory.limit_in_bytes") == str(64 << 20)
    assert read(f"{tmp_path}/memory/minirun/c1/memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(f"{tmp_path}/cpu/minirun/c1/cpu.cfs_quota_us") == "50000"
    assert read(f"{tmp_path}/cpu/minirun/c1/cpu.shares") == "512"
    assert read(f"{tmp_path}/pids/minirun/c1/pids.max") == "100"
    assert read(f"{tmp_path}/blkio/minirun/c1/blkio.weight") == "500"
    write(f"{tmp_path}/memory/minirun/c1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_killed("c1")


def test_v1_blkio_weight_missing_is_a_clear_error(tmp_path):
    cg = cgroups.CgroupV1({"blkio": f"{tmp_path}/blkio", "memory": f"{tmp_path}/memory"})
    cg.create("c1")
    with pytest.raises(OSError, match="no blkio.weight"):
        cg.apply("c1", Resources(blkio_weight=100))


def mountinfo(tmp_path, lines):
    path = tmp_path / "mountinfo"
    path.write_text("".join(f"{i} 1 0:{i} / {line}\n" for i, line in enumerate(lines, 30)))
    return str(path)


def test_detect_hybrid_host_uses_v1(tmp_path):
    path = mountinfo(tmp_path, [
        "/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
        "/sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        "/sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw"])
    cg = cgroups.detect(path)
    assert cg.version == 1
    assert cg.mounts == {"memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu,cpuacct",
                         "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}


def test_detect_pure_v2_host(tmp_path):
    cg = cgroups.detect(mountinfo(tmp_path, ["/sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate"]))
    assert (cg.version, cg.root) == (2, "/sys/fs/cgroup")


def test_resource_flags_are_checked():
    assert parse_size("64m", "-m") == 64 << 20 and parse_size("1g", "-m") == 1 << 30
    r = parse_resources(RunOptions(memory="64m", cpus="0.5", pids_limit=5))
    assert (r.memory, r.cpu_quota, r.pids_limit) == (64 << 20, 50_000, 5)
    for opts, message in [(RunOptions(memory="lots"), "not a size"),
                          (RunOptions(cpus=str(os.cpu_count() + 1)), "range of CPUs"),
                          (RunOptions(memory_swap="1g"), "needs --memory"),
                          (RunOptions(cpuset_cpus="0-999"), "this host has CPUs"),
                          (RunOptions(blkio_weight=5), "between 10 and 1000")]:
        with pytest.raises(UsageError, match=message):
            parse_resources(opts)


def test_v2_a_flag_whose_controller_is_not_delegated_names_it(tmp_path):
    root = str(tmp_path)
    cg = v2_with_c1(root, "cpu pids", "")
    with pytest.raises(OSError, match="--memory needs the cgroup v2 memory controller"):
        cg.apply("c1", Resources(memory=64 << 20, devices=None))
    cg.apply("c1", Resources(pids_limit=5, devices=None))
    assert read(f"{root}/minirun/c1/pids.max") == "5"
