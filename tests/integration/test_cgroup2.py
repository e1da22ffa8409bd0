"""The cgroup v2 driver on this host's real cgroup2 mount. On a hybrid host
(v1 controllers, a cgroup2 mount with none) that mount is exactly the case
of controllers not delegated to minirun; on a pure v2 host (the guest of
scripts/test-cgroup2) they are all there."""
import os

import pytest

from minirun.linux.cgroups import CgroupV2
from minirun.runtime.spec import Resources
from tests.conftest import needs_root

pytestmark = needs_root
UNIFIED = next((p for p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
                if os.path.exists(os.path.join(p, "cgroup.procs"))), None)
LIMITS = {"--memory": ("memory", Resources(memory=64 << 20, devices=None)),
          "--cpus": ("cpu", Resources(cpu_quota=50_000, devices=None)),
          "--pids-limit": ("pids", Resources(pids_limit=20, devices=None)),
          "--cpuset-cpus": ("cpuset", Resources(cpuset_cpus="0", devices=None))}


@pytest.fixture
def v2():
    if UNIFIED is None:
        pytest.skip("no cgroup2 mount on this host")
    driver = CgroupV2(UNIFIED)
    name = f"v2test-{os.getpid()}"
    driver.create(name)
    yield driver, name
    driver.destroy(name)


@pytest.mark.parametrize("flag", LIMITS)
def test_a_flag_works_exactly_when_its_controller_is_delegated(v2, flag):
    driver, name = v2
    controller, limits = LIMITS[flag]
    if controller in driver.available():
        driver.apply(name, limits)
    else:
        with pytest.raises(OSError, match=f"{flag} needs the cgroup v2 {controller} controller"):
            driver.apply(name, limits)
    driver.apply(name, Resources())       # the device program needs no controller at all


def test_every_limit_lands_in_its_v2_file(store_root):
    """Run where the host is pure v2 (scripts/test-cgroup2's guest)."""
    import subprocess
    from minirun.linux import cgroups
    from tests.conftest import MINIRUN
    driver = cgroups.detect()
    if driver is None or driver.version != 2:
        pytest.skip("the host drives its cgroups through v1: scripts/test-cgroup2 runs this")
    files = {"cpu.max": "25000 100000", "cpu.weight": str(cgroups.shares_to_weight(512)),
             "cpuset.cpus": "0", "memory.max": str(32 << 20),
             "memory.swap.max": str(32 << 20), "pids.max": "10"}
    flags = ["--cpus", "0.25", "--cpu-shares", "512", "--cpuset-cpus", "0", "-m", "32m",
             "--memory-swap", "64m", "--pids-limit", "10"]
    if "io" in driver.available() and os.path.exists("/sys/fs/cgroup/io.weight"):
        flags += ["--blkio-weight", "300"]
        files["io.weight"] = f"default {cgroups.blkio_to_io_weight(300)}"
    script = "; ".join(f"echo $(cat /sys/fs/cgroup/{f})" for f in files)
    out = subprocess.run(MINIRUN + ["--root", store_root, "run", "--rm", "--network", "none",
                                    *flags, "busybox", "sh",
                                    "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == list(files.values())
