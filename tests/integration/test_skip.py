"""`run --skip STEP`: each step of the start sequence, left out on purpose,
lets through exactly what it exists to stop — and the container is still
cleaned up. Each test runs the same thing with and without the step, so it
fails if the step stops doing its job or the skip stops skipping it."""
import os
import re
import time


from tests.conftest import needs_root

pytestmark = needs_root


def run(minirun, *args, check=0):
    return minirun("run", "--network", "none", *args, check=check)


def test_unknown_step_is_refused_before_anything_runs(minirun):
    out = run(minirun, "--skip", "seatbelt", "busybox", "true", check=125)
    assert out.stderr.count("\n") == 1 and "--skip seatbelt: not a step" in out.stderr


def test_a_skip_warns_and_implies_rm(minirun):
    before = minirun("ps", "-aq").stdout
    out = run(minirun, "--skip", "proc", "busybox", "true")
    assert "WARNING: --skip proc: this container is not isolated" in out.stderr
    assert minirun("ps", "-aq").stdout == before


def test_without_a_pid_namespace_host_processes_show_and_strays_are_still_killed(minirun):
    me = str(os.getpid())
    isolated = run(minirun, "busybox", "ps", "-o", "pid").stdout.split()
    assert me not in isolated and len(isolated) < 5
    out = run(minirun, "--skip", "pid-namespace", "busybox", "sh", "-c",
              "ps -o pid | grep -qx ' *%s' && echo sees-the-host; sleep 600 & echo $!" % me)
    lines = out.stdout.split()
    assert lines[0] == "sees-the-host"
    stray = int(lines[1])                       # a host PID: no namespace translates it
    deadline = time.monotonic() + 3
    while os.path.exists(f"/proc/{stray}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{stray}"), "the cgroup's stray process outlived it"


def host_mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def test_without_a_mount_namespace_its_mounts_land_on_the_host_and_go_with_it(minirun, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "keep").write_text("host data\n")
    containers = os.path.join(minirun.root, "containers")
    cid = run(minirun, "-d", "busybox", "sleep", "600").stdout.strip()
    assert host_mounts_under(containers) == []          # a namespace keeps them to itself
    minirun("rm", "-f", cid, check=0)
    cid = run(minirun, "-d", "--skip", "mount-namespace", "-v", f"{volume}:/data",
              "busybox", "sleep", "600").stdout.strip()
    try:
        seen = host_mounts_under(os.path.join(containers, cid))
        assert {os.path.basename(p) for p in seen} >= {"rootfs", "proc", "data"}
    finally:
        minirun("rm", "-f", cid, check=0)
    assert host_mounts_under(containers) == []
    assert (volume / "keep").read_text() == "host data\n"   # detached before the rmtree


def test_pivot_root_stops_the_chroot_escape(minirun, probes):
    escape = ("-v", f"{probes}/escape:/escape:ro", "busybox", "/escape")
    assert run(minirun, *escape).stdout.startswith("still inside")
    assert run(minirun, "--skip", "pivot-root", *escape).stdout.startswith("escaped")
    assert run(minirun, "--skip", "mount-namespace", *escape).stdout.startswith("escaped")


def test_without_proc_there_is_nothing_to_list(minirun):
    script = "ls /proc | wc -l"
    assert int(run(minirun, "busybox", "sh", "-c", script).stdout) > 10
    assert int(run(minirun, "--skip", "proc", "busybox", "sh", "-c", script).stdout) == 0


def test_without_a_cgroup_namespace_its_host_path_shows(minirun):
    script = "cat /proc/self/cgroup"
    assert not re.search(r":/minirun/[0-9a-f]{64}", run(minirun, "busybox", "sh", "-c", script).stdout)
    out = run(minirun, "--skip", "cgroup-namespace", "busybox", "sh", "-c", script).stdout
    assert re.search(r":/minirun/[0-9a-f]{64}", out)


def test_without_dropping_capabilities_root_can_mount(minirun):
    script = "mkdir -p /mnt; mount -t tmpfs x /mnt && echo mounted"
    assert run(minirun, "busybox", "sh", "-c", script, check=None).stdout == ""
    assert run(minirun, "--skip", "capabilities", "busybox", "sh", "-c", script).stdout == "mounted\n"


def test_exec_into_a_chrooted_container_is_refused_not_run_on_the_host(minirun):
    cid = run(minirun, "-d", "--skip", "pivot-root", "busybox", "sleep", "600").stdout.strip()
    try:
        out = minirun("exec", cid, "cat", "/etc/os-release", check=125)
        assert "--skip pivot-root" in out.stderr and out.stdout == ""
    finally:
        minirun("rm", "-f", cid, check=0)
