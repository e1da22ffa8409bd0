"""Each kind of file in a store, damaged in turn: commands say what is
damaged in one line (never a traceback), what is intact keeps working, and
a command repairs the store (`minirun repair`, or the one the line names)."""
import glob
import json
import os

import pytest

from tests.conftest import Minirun, needs_root

pytestmark = needs_root


@pytest.fixture
def m(store_root, tmp_path):
    m = Minirun(store_root)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    m("build", "-q", "-t", "mine", str(ctx), check=0)
    m("run", "--rm", "--network", "none", "mine", "true", check=0)    # a seccomp program
    m("run", "--rm", "mine", "true", check=0)                        # the default network
    return m


def one_line(out):
    assert out.returncode != 0 and "Traceback" not in out.stderr, out
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    return out.stderr


def image_file(m, name, suffix):
    image_id = json.loads(m("inspect", name, check=0).stdout)[0]["Id"]
    return os.path.join(m.root, "images", image_id[7:] + suffix)


def works(m):
    assert m("run", "--rm", "--network", "none", "busybox", "echo", "ok", check=0).stdout == "ok\n"
    m("images", check=0)


def test_damaged_names_are_read_from_the_images_and_repair_rewrites_them(m):
    with open(os.path.join(m.root, "repositories.json"), "w") as f:
        f.write('{"mine:lat')
    out = m("run", "--rm", "--network", "none", "mine", "cat", "/built", check=0)
    assert out.stdout == "built\n" and "damaged" in out.stderr
    assert "rebuilt" in m("repair", check=0).stdout
    assert m("images", check=0).stderr == ""
    assert "mine" in m("images", check=0).stdout


def test_a_damaged_image_config_is_one_line_and_repair_removes_it(m):
    with open(image_file(m, "mine", ".json"), "w") as f:
        f.write("junk")
    assert "damaged" in one_line(m("run", "--rm", "mine", "true"))
    works(m)
    assert "removed the damaged config" in m("repair", check=0).stdout
    assert "mine" not in m("images", check=0).stdout


def test_a_missing_layer_is_one_line_and_rmi_f_recovers(m):
    config = json.load(open(image_file(m, "mine", ".json")))
    top = config["rootfs"]["diff_ids"][-1][7:]
    os.rename(os.path.join(m.root, "layers", top), os.path.join(m.root, "gone"))
    assert "missing" in one_line(m("run", "--rm", "mine", "true"))
    works(m)
    m("rmi", "-f", "mine", check=0)


@pytest.mark.parametrize("kind", ["cache", "seccomp", "link"])
def test_damaged_caches_heal_or_are_repaired(m, kind, tmp_path):
    if kind == "cache":
        for path in glob.glob(os.path.join(m.root, "cache", "*.json")):
            open(path, "w").write("{")
    elif kind == "seccomp":
        for path in glob.glob(os.path.join(m.root, "seccomp", "*.bpf")):
            open(path, "wb").write(b"abc")
    else:
        for path in glob.glob(os.path.join(m.root, "l", "*")):
            os.unlink(path)
            os.symlink("../layers/nowhere/diff", path)
    works(m)
    m("build", "-q", "-t", "again", str(tmp_path / "ctx"), check=0)
    m("repair", check=0)
    works(m)


@pytest.mark.parametrize("what", ["network", "lease", "settings"])
def test_damaged_network_files_and_settings_are_repaired(m, what):
    if what == "network":
        open(os.path.join(m.root, "networks", "bridge.json"), "w").write("{")
        assert "damaged" in one_line(m("run", "--rm", "busybox", "true"))
    elif what == "lease":
        leases = os.path.join(m.root, "networks", "bridge.leases")
        os.makedirs(leases, exist_ok=True)
        open(os.path.join(leases, "10.200.0.99"), "w").write('{"contai')
    else:
        open(os.path.join(m.root, "daemon.json"), "w").write("{")
        assert "daemon.json" in one_line(m("run", "--rm", "busybox", "true"))
    out = m("repair", check=0).stdout
    assert out != "nothing to repair\n"
    m("run", "--rm", "busybox", "true", check=0)
    assert m("repair", check=0).stdout == "nothing to repair\n"
