"""--userns=remap, tested by what it stops: the same attack from a container's
root with the host's user namespace (it works: root inside is root outside)
and with remap (it fails: root inside is uid 100000 outside)."""
import json
import os

import pytest

from tests.conftest import needs_root

pytestmark = needs_root


def remapped_root():
    with open("/etc/subuid") as f:
        for line in f:
            name, start, _ = line.strip().split(":")
            if name == "minirun":
                return int(start)
    pytest.fail("scripts/setup gives the user minirun a range in /etc/subuid")


@pytest.fixture
def host_files(tmp_path):
    """A root-only host file and a directory anyone may write, as volumes."""
    d = tmp_path / "vol"
    d.mkdir()
    os.chmod(d, 0o777)
    (d / "root-only").write_text("root's secret\n")
    os.chmod(d / "root-only", 0o600)
    (d / "root-owned").write_text("unchanged\n")
    os.chmod(d / "root-owned", 0o644)
    os.chmod(tmp_path, 0o755)
    return d


ATTACK = ("cat /vol/root-only; echo pwned >> /vol/root-owned; echo made > /vol/made; "
          "ls -ln /vol/made")


@pytest.mark.parametrize("layers", ["idmapped", "chowned"])
def test_remapped_root_is_nobody_on_the_host(m, host_files, layers, monkeypatch):
    monkeypatch.setenv("MINIRUN_USERNS_LAYERS", layers)
    as_host_root = m("run", "--rm", "--userns", "host", "-v", f"{host_files}:/vol", "busybox",
                     "sh", "-c", ATTACK)
    assert "root's secret" in as_host_root.stdout          # root inside is root outside
    (host_files / "root-owned").write_text("unchanged\n")
    os.unlink(host_files / "made")
    out = m("run", "--rm", "--userns", "remap", "-v", f"{host_files}:/vol", "busybox",
            "sh", "-c", ATTACK)
    assert "root's secret" not in out.stdout and "Permission denied" in out.stderr
    assert (host_files / "root-owned").read_text() == "unchanged\n"
    st = os.stat(host_files / "made")
    assert (st.st_uid, st.st_gid) == (remapped_root(), remapped_root())


@pytest.mark.parametrize("layers", ["idmapped", "chowned"])
def test_inside_the_image_is_still_roots(m, layers, monkeypatch):
    monkeypatch.setenv("MINIRUN_USERNS_LAYERS", layers)
    out = m.sh("cat /proc/self/uid_map; id -u; stat -c '%U %G' / /bin /bin/busybox /etc/hosts /dev/null; "
               "touch /made-by-root && stat -c %U /made-by-root", "--userns", "remap")
    lines = out.splitlines()
    assert lines[0].split() == ["0", str(remapped_root()), "65536"]
    assert lines[1] == "0"
    assert set(lines[2:]) == {"root root", "root"}


def test_exec_and_detached_containers_are_remapped(m):
    cid = m("run", "-d", "--userns", "remap", "busybox", "sleep", "30", check=0).stdout.strip()
    try:
        out = m("exec", cid, "sh", "-c", "cat /proc/self/uid_map; ping -c1 -W1 127.0.0.1 >/dev/null "
                                         "&& echo ping-ok", check=0).stdout.split()
        assert out == ["0", str(remapped_root()), "65536", "ping-ok"]
        pid = json.loads(m("inspect", cid, check=0).stdout)[0]["State"]["Pid"]
        assert os.stat(f"/proc/{pid}").st_uid == remapped_root()
    finally:
        m("rm", "-f", cid)


def test_the_store_default_remaps_build_steps_and_layers_keep_the_images_ids(m, tmp_path):
    m("images", "-q", check=0)
    (tmp_path / "store" / "daemon.json").write_text('{"userns-remap": "default"}')
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN cat /proc/self/uid_map > /map && echo f > /f && chown 1000:1000 /f\n")
    m("build", "-q", "-t", "remapped", str(ctx), check=0)
    out = m("run", "--rm", "--userns", "host", "remapped", "sh", "-c",
            "cat /map; stat -c '%u %g' /f /map", check=0).stdout.split()
    assert out == ["0", str(remapped_root()), "65536", "1000", "1000", "0", "0"]


@pytest.mark.parametrize("flags, message", [
    (("--privileged",), "--privileged needs --userns=host"),
    (("--network", "host"), "needs --userns=host"),
    (("-u", "70000"), "cannot become uid 70000"),
])
def test_what_remap_cannot_do_is_one_line(m, flags, message):
    out = m("run", "--rm", "--userns", "remap", *flags, "busybox", "true")
    assert out.returncode == 125 and message in out.stderr and len(out.stderr.splitlines()) == 1


def test_chowned_copies_go_with_their_layers(m, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIRUN_USERNS_LAYERS", "chowned")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY Dockerfile /\n")
    m("build", "-q", "-t", "copied", str(ctx), check=0)
    m("run", "--rm", "--userns", "remap", "copied", "true", check=0)
    remapped = tmp_path / "store" / "layers-remapped"
    (mapping,) = os.listdir(remapped)
    assert len(os.listdir(remapped / mapping)) == 2
    keeper = m("create", "--network", "none", "busybox", "true", check=0).stdout.strip()
    m("rmi", "copied", check=0)
    m("image", "prune", "-a", check=0)      # the build cache held the COPY layer too
    kept = set(os.listdir(remapped / mapping))
    assert len(kept) == 1 and kept == set(os.listdir(tmp_path / "store" / "layers"))
    m("rm", keeper, check=0)


def test_cgroup_limits_hold_under_remap(m):
    out = m.sh("cat /sys/fs/cgroup/memory/memory.max /sys/fs/cgroup/memory.max "
               "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
               "/sys/fs/cgroup/pids.max 2>/dev/null; true", "--userns", "remap", "-m", "32m",
               "--pids-limit", "20")
    assert out.split() == [str(32 << 20), "20"]
