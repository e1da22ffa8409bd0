"""The seccomp filter, tested by the attacks it stops: each runs from inside a
container with the default profile (refused, EPERM) and again with
`--security-opt seccomp=unconfined`, where it gets through — proof that the
filter, not something else, is what stopped it."""
import ctypes
import json
import os

import pytest

from tests.conftest import needs_root

pytestmark = needs_root
EPERM = "errno 1"


def probe(m, probes, *args, flags=()):
    out = m("run", "--rm", *flags, "-v", f"{probes}:/probes:ro", "busybox", "/probes/syscalls", *args)
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


@pytest.fixture
def host_key():
    """A key in root's user keyring on the host: the keyring is not
    namespaced, so a container's root reaches the same one."""
    libc = ctypes.CDLL(None, use_errno=True)
    desc = f"minirun-test-{os.getpid()}".encode()
    secret = b"host-key-secret"
    key = libc.syscall(248, b"user", desc, secret, len(secret), -4)   # add_key(2)
    assert key > 0, os.strerror(ctypes.get_errno())
    libc.syscall(250, 5, key, 0x3f3f0000)          # keyctl(KEYCTL_SETPERM): user may read
    yield desc.decode()
    libc.syscall(250, 21, key)                     # keyctl(KEYCTL_INVALIDATE)


def test_the_default_profile_refuses_what_docker_refuses(m, probes, host_key):
    confined = probe(m, probes, host_key)
    unconfined = probe(m, probes, host_key, flags=("--security-opt", "seccomp=unconfined"))
    assert "key payload" not in confined and unconfined.get("key") == "payload host-key-secret"
    for call in ("keyctl", "perf_event_open", "io_uring_setup", "socket_vsock",
                 "personality_addr_no_randomize", "unshare_user", "userfaultfd"):
        assert confined[call] == EPERM, (call, confined)
    # Where the kernel itself allows them, only the filter said no:
    for call in ("keyctl", "perf_event_open", "io_uring_setup", "personality_addr_no_randomize",
                 "unshare_user"):
        assert unconfined[call] != EPERM, (call, unconfined)


def test_no_nested_user_namespace_lifts_the_containers_own_limits(m, probes):
    script = "/probes/syscalls --lift-limits; cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null"
    def attack(*flags):
        out = m("run", "--rm", "--pids-limit", "50", *flags, "-v", f"{probes}:/probes:ro",
                "busybox", "sh", "-c", script).stdout
        return out, dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    out, confined = attack()
    assert confined["unshare_user_mount_cgroup"] == EPERM and out.splitlines()[-1] == "50"
    out, unconfined = attack("--security-opt", "seccomp=unconfined")
    assert unconfined["mount_cgroup2"] == "ok"          # the step the filter stops
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):   # pure v2: the limit falls
        assert unconfined["pids.max"] == "ok"


def test_cap_add_opens_the_calls_of_that_capability(m):
    assert m.sh("mkdir /m && mount -t tmpfs x /m && echo mounted", "--cap-add", "SYS_ADMIN") \
        == "mounted\n"


def test_privileged_has_no_filter_and_inspect_names_the_profile(m, tmp_path):
    assert m.sh("grep Seccomp: /proc/self/status", "--privileged").split() == ["Seccomp:", "0"]
    assert m.sh("grep Seccomp: /proc/self/status").split() == ["Seccomp:", "2"]
    cid = m("create", "--network", "none", "busybox", "true", check=0).stdout.strip()
    host = json.loads(m("inspect", cid, check=0).stdout)[0]["HostConfig"]
    assert host["Seccomp"]["Profile"] == "default" and host["Seccomp"]["Rules"] > 300
    m("rm", cid, check=0)


def test_a_docker_format_profile_file_is_used(m, tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 13}]}
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile))
    out = m("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "mkdir", "/x")
    assert out.returncode != 0 and "Permission denied" in out.stderr


@pytest.mark.parametrize("profile, message", [
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_ERRNO"}]}, "blocks execve"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}, "blocks execve"),
    ({"defaultAction": "SCMP_ACT_NOPE", "syscalls": []}, "unknown defaultAction"),
    ("{not json", "not valid JSON"),
])
def test_bad_profiles_are_one_line(m, tmp_path, profile, message):
    path = tmp_path / "p.json"
    path.write_text(profile if isinstance(profile, str) else json.dumps(profile))
    out = m("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "true")
    assert out.returncode == 125 and message in out.stderr and len(out.stderr.splitlines()) == 1


def test_build_run_steps_are_filtered_too(m, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN grep Seccomp: /proc/self/status > /seccomp\n")
    m("build", "-q", "-t", "filtered", str(tmp_path), check=0)
    assert m("run", "--rm", "filtered", "cat", "/seccomp", check=0).stdout.split() == ["Seccomp:", "2"]
