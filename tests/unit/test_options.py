"""Door 1's checks, without root: flags → spec pieces, and the image's users."""
import os

import pytest

from minirun.errors import UsageError
from minirun.linux.fs import open_in_root, open_root
from minirun.runtime.options import RunOptions, parse_env, parse_tmpfs, parse_volume, process_args
from minirun.runtime.users import resolve_user


def test_parse_volume(tmp_path):
    m = parse_volume(f"{tmp_path}:/data:ro")
    assert (m.source, m.target, m.readonly) == (str(tmp_path), "/data", True)
    assert parse_volume(f"{tmp_path}:/data").readonly is False


@pytest.mark.parametrize("spec, message", [
    ("nocolon", "want HOST:CONTAINER"),
    ("/tmp:/x:rx", "mode must be ro or rw"),
    ("rel:/x", "host path must be absolute"),
    ("/tmp:rel", "container path must be absolute"),
    ("/no/such/dir:/x", "does not exist"),
])
def test_bad_volumes(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_volume(spec)


def test_parse_tmpfs():
    assert parse_tmpfs("/run:size=1m").options == "size=1m"
    with pytest.raises(UsageError):
        parse_tmpfs("run")


def test_parse_env(tmp_path, monkeypatch):
    f = tmp_path / "e"
    f.write_text("# c\n\nA=1\nB=x=y\n")
    monkeypatch.setenv("FROM_HOST", "h")
    assert parse_env(["C=3", "FROM_HOST", "UNSET_THING"], [str(f)]) == {
        "A": "1", "B": "x=y", "C": "3", "FROM_HOST": "h"}
    with pytest.raises(UsageError, match="invalid environment variable"):
        parse_env(["=x"], [])


def test_process_args_follow_dockers_rules():
    config = {"Entrypoint": ["/ep"], "Cmd": ["a"]}
    assert process_args(RunOptions(), config) == ["/ep", "a"]
    assert process_args(RunOptions(command=["b"]), config) == ["/ep", "b"]
    assert process_args(RunOptions(entrypoint="sh"), config) == ["sh"]
    with pytest.raises(UsageError, match="no command"):
        process_args(RunOptions(), {})


@pytest.fixture
def layers(tmp_path):
    low, top = tmp_path / "low", tmp_path / "top"
    (low / "etc").mkdir(parents=True)
    (top / "etc").mkdir(parents=True)
    (low / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (top / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/sh\n")
    (top / "etc/group").write_text("root:x:0:\nann:x:1000:\nstaff:x:50:ann,bob\n")
    return [str(low), str(top)]


def test_resolve_user(layers):
    ann = resolve_user("ann", layers)   # the top layer's passwd wins
    assert (ann.uid, ann.gid, ann.additional_gids, ann.home) == (1000, 1000, [50], "/home/ann")
    assert (resolve_user("ann:staff", layers).gid) == 50
    n = resolve_user("4242", layers)
    assert (n.uid, n.gid, n.home) == (4242, 0, "/")
    assert resolve_user("", layers).uid == 0
    with pytest.raises(UsageError, match="unable to find user bob"):
        resolve_user("bob", layers)
    with pytest.raises(UsageError, match="unable to find group nogroup"):
        resolve_user("ann:nogroup", layers)


def test_open_in_root_resolves_symlinks_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink(str(tmp_path / "outside"), root / "etc/abs")
    os.symlink("../../../../outside", root / "etc/rel")
    fd = open_root(str(root))
    try:
        for path in ("/etc/abs/made", "/etc/rel/made", "/../../outside/made"):
            os.close(open_in_root(fd, path, make="dir"))
        assert os.path.isdir(root / str(tmp_path / "outside/made").lstrip("/"))
        assert os.path.isdir(root / "outside/made")
        assert not (tmp_path / "outside").exists()
    finally:
        os.close(fd)