"""Bad input, generated: every subcommand driven with random and edge
arguments (hypothesis). Whatever comes in, minirun answers with no
traceback, within a timeout, with an exit status a Docker user expects, and
a refused command leaves the store as it was. A second set of inputs, each
known to be wrong, must not succeed."""
import os
import subprocess

import click
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minirun.cli import cli
from tests.conftest import MINIRUN, Minirun, needs_root

pytestmark = needs_root
STATUSES = {0, 1, 2, 125, 126, 127}
# Commands that wait on purpose (a stream, a container's end): given --help-free
# random input they may legitimately block, so they run with what ends them.
BLOCKING = {("stats",): ["--no-stream"], ("logs",): [], ("wait",): [], ("start",): []}


def commands(group=cli, path=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):          # the root's are imported on demand
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))
        else:
            yield path + (name,), command


COMMANDS = list(commands())

# Values that have broken command lines before: empty, spaces, upper case,
# climbing paths, huge and negative numbers, control characters, junk.
EDGE = ["", " ", "UPPER", "a b", "..", "../..", "-1", "0", "99999999999999999999", "1e309",
        "nan", "-", "--", "=", ":", "::", "a:b:c:d", "\t", "é", "x" * 300, "%s%n", "$(id)",
        "busybox", "busybox:latest", "busybox@sha256:xyz", "sha256:", "tcp", "80:80/sctp",
        "10.0.0.0/33", "0.0.0.0", "SIGFOO", "999", "64q", "0-99", "ALL", "seccomp=/nonexistent",
        "remap", "host", "none", "container:", "rwx", "/dev/null:rel"]
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
               max_size=12)
value = st.one_of(st.sampled_from(EDGE), text)


def argv_for(path, command, draw):
    argv = list(path)
    for param in command.params:
        if isinstance(param, click.Option) and draw(st.integers(0, 4)) == 0:
            argv.append(draw(st.sampled_from(param.opts)))
            if not param.is_flag:
                argv.append(draw(value))
    for param in command.params:
        if isinstance(param, click.Argument):
            count = 1 if param.nargs == 1 else draw(st.integers(0, 2))
            argv += [draw(value) for _ in range(count)]
    return argv + BLOCKING.get(path, [])


def snapshot(root):
    """Every file of the store with its size and mtime; left out are what
    any command remakes on use: compiled seccomp programs and the short
    layer links of l/."""
    found = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (dirpath == root and d in ("seccomp", "l"))]
        for name in files + dirnames:
            path = os.path.join(dirpath, name)
            try:
                st_ = os.lstat(path)
            except FileNotFoundError:
                continue
            found[os.path.relpath(path, root)] = (st_.st_size, st_.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad-input") / "store")
    m = Minirun(root)
    m("images", "-q", check=0)
    m("network", "ls", check=0)
    m("create", "--name", "keep", "--network", "none", "busybox", "true", check=0)
    yield m
    for cid in m("ps", "-a", "-q").stdout.split():
        m("rm", "-f", cid)
    m("network", "prune")


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_command_line_is_answered_in_one_line(scratch, data):
    path, command = data.draw(st.sampled_from(COMMANDS))
    argv = argv_for(path, command, data.draw)
    if path in (("run",), ("create",)) and not any(a in ("-d", "--detach") for a in argv):
        argv.insert(1, "--rm")
    before = snapshot(scratch.root)
    try:
        done = subprocess.run(MINIRUN + ["--root", scratch.root, *argv], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"minirun {' '.join(argv)} hung")
    assert "Traceback" not in done.stderr, (argv, done.stderr)
    assert done.returncode in STATUSES, (argv, done.returncode, done.stderr)
    if done.returncode != 0:
        assert done.stderr.strip(), (argv, "refused without saying why")
        after = snapshot(scratch.root)
        assert after == before, (argv, set(after) ^ set(before))
    # Back to the starting point for the next example: what a success left
    # behind goes, and busybox is made again if a success removed it (a
    # refused `run busybox` would otherwise make it, changing the store).
    for cid in scratch("ps", "-a", "-q").stdout.split():
        if cid != scratch("ps", "-a", "-q", "--no-trunc").stdout.split()[0][:12]:
            scratch("rm", "-f", cid)
    scratch("images", "-q")


WRONG = [
    ["run", "--rm", "--cpus", "abc", "busybox", "true"],
    ["run", "--rm", "-m", "1q", "busybox", "true"],
    ["run", "--rm", "--name", "Bad Name", "busybox", "true"],
    ["run", "--rm", "--name", "..", "busybox", "true"],
    ["run", "--rm", "-p", "99999:80", "busybox", "true"],
    ["run", "--rm", "-p", "80:80/sctp", "busybox", "true"],
    ["run", "--rm", "--pids-limit", "abc", "busybox", "true"],
    ["run", "--rm", "-e", "A B=1", "busybox", "true"],
    ["run", "--rm", "UPPER", "true"],
    ["run", "--rm", "a//b", "true"],
    ["run", "--rm", "--network", "nonexistent", "busybox", "true"],
    ["kill", "-s", "SIGFOO", "keep"],
    ["stop", "-t", "-5", "keep"],
    ["logs", "--tail", "x", "keep"],
    ["network", "create", "--subnet", "10.0.0.0/33", "n"],
    ["network", "create", "Bad Name"],
    ["tag", "busybox", "Bad:Tag:x"],
    ["save", "--format", "zip", "-o", "/tmp/x.tar", "busybox"],
    ["dockerfile", "parse", "/nonexistent"],
    ["rm", ""],
    ["rmi", ""],
    ["image", "prune", "--all", "extra"],
]


@pytest.mark.parametrize("argv", WRONG, ids=lambda a: " ".join(a)[:40])
def test_wrong_input_never_succeeds(scratch, argv):
    before = snapshot(scratch.root)
    done = subprocess.run(MINIRUN + ["--root", scratch.root, *argv], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode in STATUSES - {0}, (argv, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert snapshot(scratch.root) == before


@pytest.mark.parametrize("junk", ["binary", "long line", "fifo", "socket"])
def test_bad_build_contexts_are_one_line(scratch, tmp_path, junk):
    if junk == "binary":
        (tmp_path / "Dockerfile").write_bytes(os.urandom(4096))
    elif junk == "long line":
        (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo " + "x" * (10 << 20) + "\n")
    else:
        import socket
        (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY . /ctx\n")
        if junk == "fifo":
            os.mkfifo(tmp_path / "pipe")
        else:
            socket.socket(socket.AF_UNIX).bind(str(tmp_path / "sock"))
    done = subprocess.run(MINIRUN + ["--root", scratch.root, "build", "-t", "junk", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in STATUSES
    if done.returncode:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-500:]
    scratch("rmi", "-f", "junk")


@pytest.mark.parametrize("archive", ["random", "empty", "lying"])
def test_bad_archives_are_one_line(scratch, tmp_path, archive):
    import io
    import json
    import tarfile
    path = tmp_path / "a.tar"
    if archive == "random":
        path.write_bytes(os.urandom(10000))
    elif archive == "empty":
        path.write_bytes(b"")
    else:
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            manifest = json.dumps([{"Config": "c.json", "Layers": ["l.tar"]}]).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
        path.write_bytes(data.getvalue())
    before = snapshot(scratch.root)
    done = subprocess.run(MINIRUN + ["--root", scratch.root, "load", "-i", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 125 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert snapshot(scratch.root) == before
