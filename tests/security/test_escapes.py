"""Each test here performs a real escape attempt — a container, an image, a
tar or a Dockerfile reaching for the host — and checks the host is untouched.
Every one of them succeeded against minirun before its defense existed; the
defenses and the attacks are listed side by side in docs/security.md."""
import io
import json
import os
import pty
import select
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import termios
import fcntl
import struct
import time

import pytest

from tests.conftest import MINIRUN, Minirun, needs_root

pytestmark = needs_root
@pytest.fixture
def host_dir():
    """A directory on the host, outside every store, that no container may reach."""
    d = tempfile.mkdtemp(prefix="minirun-host-")
    with open(os.path.join(d, "secret"), "w") as f:
        f.write("host secret\n")
    os.chmod(os.path.join(d, "secret"), 0o600)
    yield d
    shutil.rmtree(d)


def kernel_log_has(marker):
    return marker in subprocess.run(["dmesg"], capture_output=True, text=True).stdout


def build_image(m, tmp_path, name, dockerfile, files=None):
    ctx = tmp_path / f"ctx-{name}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for rel, content in (files or {}).items():
        if isinstance(content, bytes):
            (ctx / rel).write_bytes(content)
        else:
            (ctx / rel).write_text(content)
    m("build", "-q", "-t", name, str(ctx), check=0)
    return ctx


# --- 1. devices ---------------------------------------------------------------------

def test_a_device_node_made_inside_exists_but_cannot_be_opened(m):
    marker = f"minirun-kmsg-{os.getpid()}-{time.time_ns()}"
    out = m("run", "--rm", "busybox", "sh", "-c",
            f"mknod /tmp/loop b 7 0 && mknod /tmp/kmsg c 1 11 && echo made; "
            f"head -c 1 /tmp/loop >/dev/null && echo read-loop; "
            f"echo {marker} > /tmp/kmsg && echo wrote-kmsg; "
            f"echo ok > /dev/null && echo null-ok")
    assert out.stdout.split() == ["made", "null-ok"], out
    assert out.stderr.count("Operation not permitted") == 2, out.stderr
    assert not kernel_log_has(marker)


def test_a_device_node_shipped_in_an_image_is_unusable(m, tmp_path):
    marker = f"minirun-shipped-{os.getpid()}-{time.time_ns()}"
    nodes = io.BytesIO()
    with tarfile.open(fileobj=nodes, mode="w") as tar:
        info = tarfile.TarInfo("kmsg")
        info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, 1, 11, 0o666
        tar.addfile(info)
    build_image(m, tmp_path, "shipped", "FROM busybox\nADD nodes.tar /shipped/\n",
                {"nodes.tar": nodes.getvalue()})
    for user in ("0", "1000"):
        out = m("run", "--rm", "-u", user, "shipped", "sh", "-c",
                f"ls -l /shipped/kmsg; echo {marker} > /shipped/kmsg && echo wrote")
        assert "c" == out.stdout[:1] and "wrote" not in out.stdout, out
    assert not kernel_log_has(marker)


def test_device_flag_opens_the_named_device_with_its_access(m, tmp_path):
    """--device HOST:CTR:w, for a node of the kernel log (there on every
    machine): written, not read — the rule gives exactly the access asked."""
    node = tmp_path / "kmsg"
    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 11))
    marker = f"minirun-device-flag-{time.time_ns()}"
    out = m("run", "--rm", "--device", f"{node}:/dev/xkmsg:w", "busybox", "sh", "-c",
            f"echo {marker} > /dev/xkmsg && echo write-ok; head -c 1 /dev/xkmsg || echo read-refused")
    assert out.stdout.split() == ["write-ok", "read-refused"], out
    assert kernel_log_has(marker)


def test_privileged_opens_every_device(m):
    out = m("run", "--rm", "--privileged", "busybox", "sh", "-c",
            "mknod /tmp/loop b 7 0 && head -c 0 /tmp/loop && echo opened", check=0)
    assert out.stdout == "opened\n"


@pytest.mark.parametrize("flag, message", [
    ("/dev/no-such-device", "/dev/no-such-device"),
    ("/etc/passwd", "not a device"),
    ("/dev/null:/dev/n:rwx", "rwx"),
    ("/dev/null:dev/n", "absolute"),
])
def test_bad_device_flags_are_one_line(m, flag, message):
    out = m("run", "--rm", "--device", flag, "busybox", "true")
    assert out.returncode == 125 and message in out.stderr and len(out.stderr.splitlines()) == 1, out


def test_the_cgroup2_device_program_denies_what_is_not_listed(tmp_path):
    """The eBPF program, on this host's real cgroup2 mount: a process in the
    cgroup can open /dev/null but not a node for /dev/kmsg."""
    from minirun.linux.cgroups import CgroupV2
    from minirun.runtime.spec import Resources
    unified = "/sys/fs/cgroup/unified" if os.path.ismount("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(unified, "cgroup.procs")):
        pytest.skip("no cgroup2 mount on this host")
    kmsg = tmp_path / "kmsg"
    os.mknod(kmsg, stat.S_IFCHR | 0o666, os.makedev(1, 11))
    driver = CgroupV2(unified)
    name = f"devtest-{os.getpid()}"
    driver.create(name)
    try:
        driver.apply(name, Resources())
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            driver.add(name, 0)
            results = []
            for path in ("/dev/null", str(kmsg)):
                try:
                    os.close(os.open(path, os.O_WRONLY))
                    results.append("open")
                except PermissionError:
                    results.append("EPERM")
            os.write(w, " ".join(results).encode())
            os._exit(0)
        os.close(w)
        got = os.read(r, 100).decode()
        os.waitpid(pid, 0)
        assert got == "open EPERM"
    finally:
        driver.destroy(name)


# --- 2. inherited file descriptors ----------------------------------------------------

def test_an_inherited_directory_fd_does_not_reach_the_container(m, host_dir):
    fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = subprocess.run(
            MINIRUN + ["--root", m.root, "run", "--rm", "busybox", "sh", "-c",
                       f"cat /proc/self/fd/{fd}/secret; touch /proc/self/fd/{fd}/pwned"],
            pass_fds=[fd], capture_output=True, text=True)
        cwd = subprocess.run(
            MINIRUN + ["--root", m.root, "run", "--rm", "-w", f"/proc/self/fd/{fd}", "busybox",
                       "sh", "-c", "cat secret; touch pwned2"],
            pass_fds=[fd], capture_output=True, text=True)
    finally:
        os.close(fd)
    assert "host secret" not in out.stdout + cwd.stdout
    assert sorted(os.listdir(host_dir)) == ["secret"]


def test_stdout_on_a_host_file_cannot_be_reopened(m, host_dir):
    path = os.path.join(host_dir, "log")
    with open(path, "w") as f:
        f.write("host log line\n")
    with open(path, "a") as out:
        subprocess.run(MINIRUN + ["--root", m.root, "run", "--rm", "busybox", "sh", "-c",
                                  ": > /proc/self/fd/1; echo from-container"],
                       stdout=out, stderr=subprocess.DEVNULL)
    with open(path) as f:
        assert f.read() == "host log line\nfrom-container\n"


def test_stdin_on_a_host_file_cannot_be_reopened_for_writing(m, host_dir):
    secret = os.path.join(host_dir, "secret")
    with open(secret) as stdin:
        subprocess.run(MINIRUN + ["--root", m.root, "run", "--rm", "-i", "busybox", "sh", "-c",
                                  "echo pwned > /proc/self/fd/0"],
                       stdin=stdin, capture_output=True)
    with open(secret) as f:
        assert f.read() == "host secret\n"


# --- 3. the caller's terminal -------------------------------------------------------

def run_on_a_terminal(argv):
    """Run argv as the session leader of a new pty (the caller's terminal);
    returns (what reached the terminal's input queue, its window size after)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.execvp(argv[0], argv)
    # Drain the output so the child never blocks on a full pty.
    output = b""
    while True:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                chunk = b""
            output += chunk
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    size = struct.unpack("HHHH", fcntl.ioctl(slave, termios.TIOCGWINSZ, b"\0" * 8))[:2]
    os.set_blocking(slave, False)
    try:
        injected = os.read(slave, 4096)
    except BlockingIOError:
        injected = b""
    os.close(slave)
    os.close(master)
    return injected, size, output


def test_no_input_can_be_pushed_into_the_callers_terminal(m, probes):
    injected, size, output = run_on_a_terminal(
        MINIRUN + ["--root", m.root, "run", "--rm", "-v", f"{probes}:/probes:ro",
                   "busybox", "/probes/tiocsti"])
    assert b"pushed 0 bytes" in output, output
    assert b"INJECTED" not in injected
    assert size == (24, 80)


def test_with_t_the_container_has_its_own_terminal(m, probes):
    injected, size, output = run_on_a_terminal(
        MINIRUN + ["--root", m.root, "run", "--rm", "-t", "-v", f"{probes}:/probes:ro",
                   "busybox", "/probes/tiocsti"])
    assert b"INJECTED" not in injected and size == (24, 80)


# --- 4. exec's helper and --init ------------------------------------------------------

def test_execs_host_side_helper_is_never_readable_from_inside(m, probes):
    marker = f"MINIRUN_SECRET_{time.time_ns()}"
    cid = m("run", "-d", "-v", f"{probes}:/probes:ro", "busybox",
            "/probes/environ_snoop", marker, "6", check=0).stdout.strip()
    try:
        deadline = time.monotonic() + 10
        while "ready" not in m("logs", cid).stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        env = dict(os.environ, SECRET_FOR_TEST=marker)
        for _ in range(25):
            subprocess.run(MINIRUN + ["--root", m.root, "exec", cid, "true"], env=env,
                           capture_output=True)
        m("wait", cid, timeout=30)
        report = m("logs", cid).stdout
        assert "environ read 0 times, exe opened 0 times" in report, report
    finally:
        m("rm", "-f", cid)


def test_init_is_a_static_init_not_a_host_interpreter(m):
    out = m("run", "--rm", "--init", "busybox", "sh", "-c",
            "readlink /proc/1/exe; head -c 200000 /proc/1/exe | grep -c -i python || true",
            check=0)
    exe, pythons = out.stdout.split()
    assert exe == "/sbin/docker-init" and pythons == "0"


# --- 5. mount targets -------------------------------------------------------------------

def test_mount_targets_stay_inside_the_rootfs_during_a_symlink_race(m, probes, host_dir, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    escape = os.path.join(host_dir, "escape")
    os.mkdir(escape)
    racer = m.popen("run", "--rm", "--network", "none", "-v", f"{shared}:/v",
                    "-v", f"{probes}:/probes:ro", "busybox", "/probes/swap_symlink", "/v", escape,
                    "8", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert racer.stdout.readline() == "ready\n"
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        m("run", "--rm", "--network", "none", "-v", f"{shared}:/v",
          "--tmpfs", "/v/x/made-by-minirun", "-v", f"{host_dir}/secret:/v/x/file",
          "busybox", "true")
    racer.communicate(timeout=30)
    assert os.listdir(escape) == [], "minirun created a mount point on the host"


# --- 6. build ------------------------------------------------------------------------

def test_copy_from_a_stage_resolves_symlinks_inside_that_stage(m, tmp_path, host_dir):
    secret = os.path.join(host_dir, "secret")
    ctx = tmp_path / "ctx-leak"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM busybox AS s1\nRUN ln -s {secret} /leak && ln -s {host_dir} /leakdir\n"
        f"FROM busybox\nCOPY --from=s1 /leak /got\nCOPY --from=s1 /leakdir/secret /got2\n")
    out = m("build", "-t", "leak", str(ctx))
    assert out.returncode != 0
    if m("images", "-q", "leak").stdout.strip():
        assert "host secret" not in m("run", "--rm", "leak", "cat", "/got", "/got2").stdout


def test_a_dockerignored_file_cannot_be_reached_through_a_symlink(m, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "private.key").write_text("do not ship\n")
    (ctx / ".dockerignore").write_text("private.key\n")
    os.symlink("private.key", ctx / "innocent")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY innocent /innocent\n")
    out = m("build", "-t", "ign", str(ctx))
    assert out.returncode != 0 and "private.key" in out.stderr
    assert not m("images", "-q", "ign").stdout.strip()


@pytest.mark.parametrize("collision", ["file", "directory", "single file"])
def test_a_later_copy_source_never_writes_through_an_earlier_ones_symlink(m, tmp_path, host_dir,
                                                                        collision):
    # d1 puts a symlink to the host at /dst/x; d2 (or the file x) then brings
    # a file, or a directory with a file, of the same name.
    secret = os.path.join(host_dir, "secret")
    ctx = tmp_path / "ctx"
    (ctx / "d1").mkdir(parents=True)
    (ctx / "d2").mkdir()
    if collision == "directory":
        os.symlink(host_dir, ctx / "d1" / "x")
        (ctx / "d2" / "x").mkdir()
        (ctx / "d2" / "x" / "secret").write_text("planted\n")
        sources, inside = "d1 d2", "/dst/x/secret"
    else:
        os.symlink(secret, ctx / "d1" / "x")
        (ctx / ("x" if collision == "single file" else "d2/x")).write_text("planted\n")
        sources, inside = ("d1 x" if collision == "single file" else "d1 d2"), "/dst/x"
    (ctx / "Dockerfile").write_text(f"FROM busybox\nCOPY {sources} /dst/\n")
    m("build", "-q", "-t", "through", str(ctx), check=0)
    with open(secret) as f:
        assert f.read() == "host secret\n"
    assert os.listdir(host_dir) == ["secret"]
    # the later source won, inside the image, as a later tar entry does
    assert m("run", "--rm", "--network", "none", "through", "cat", inside).stdout == "planted\n"


def test_run_steps_have_their_own_network(m, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nRUN (echo reached-host | nc -w 1 127.0.0.1 {port}) || true; "
        f"ls /sys/class/net > /nets\n")
    try:
        m("build", "-t", "netcheck", str(ctx), check=0)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
    nets = m("run", "--rm", "--network", "none", "netcheck", "cat", "/nets").stdout.split()
    assert sorted(nets) == ["eth0", "lo"]
    ctx2 = tmp_path / "ctx2"
    ctx2.mkdir()
    (ctx2 / "Dockerfile").write_text("FROM busybox\nRUN ls /sys/class/net > /nets\n")
    m("build", "--network", "none", "-t", "nonet", str(ctx2), check=0)
    assert m("run", "--rm", "--network", "none", "nonet", "cat", "/nets").stdout.split() == ["lo"]


# --- 7. tar extraction -----------------------------------------------------------------

def chmod_through_symlink_tar(target):
    """A directory entry, then a symlink of the same name to `target`: an
    extractor that sets directory modes at the end chmods the link's target."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        d = tarfile.TarInfo("x")
        d.type, d.mode = tarfile.DIRTYPE, 0o777
        tar.addfile(d)
        s = tarfile.TarInfo("x")
        s.type, s.linkname = tarfile.SYMTYPE, target
        tar.addfile(s)
    return data.getvalue()


def docker_archive_with_layer(layer):
    import hashlib
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in (("layer.tar", layer), ("config.json", config),
                              ("manifest.json", json.dumps([{"Config": "config.json",
                                                             "RepoTags": ["evil:latest"],
                                                             "Layers": ["layer.tar"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return data.getvalue()


@pytest.mark.parametrize("door", ["import", "load", "ADD"])
def test_tar_extraction_never_changes_the_host_through_a_symlink(m, tmp_path, host_dir, door):
    secret = os.path.join(host_dir, "secret")
    before = os.stat(secret)
    os.utime(secret, (1000, 1000))
    evil = chmod_through_symlink_tar(secret)
    path = tmp_path / "evil.tar"
    if door == "import":
        path.write_bytes(evil)
        m("import", str(path), "evil")
    elif door == "load":
        path.write_bytes(docker_archive_with_layer(evil))
        m("load", "-i", str(path))
    else:
        build_image(m, tmp_path, "evil", "FROM busybox\nADD evil.tar /x/\n", {"evil.tar": evil})
    after = os.stat(secret)
    assert stat.S_IMODE(after.st_mode) == 0o600 and after.st_mtime == 1000
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


# --- 8. users ------------------------------------------------------------------------

def test_user_lookup_reads_the_images_passwd_not_the_hosts(m, tmp_path, host_dir):
    passwd = os.path.join(host_dir, "passwd")
    with open(passwd, "w") as f:
        f.write("hostonly:x:4242:4242::/:/bin/sh\n")
    build_image(m, tmp_path, "pwlink", f"FROM busybox\nRUN ln -sf {passwd} /etc/passwd\n")
    out = m("run", "--rm", "-u", "hostonly", "pwlink", "id", "-u")
    assert out.returncode == 125 and "unable to find user hostonly" in out.stderr, out


# --- 9. the store ---------------------------------------------------------------------

def test_the_store_is_roots_alone():
    parent = tempfile.mkdtemp(prefix="minirun-perm-")
    os.chmod(parent, 0o755)          # like /var/lib
    root = os.path.join(parent, "store")
    try:
        m = Minirun(root)
        cid = m("create", "--network", "none", "busybox", "true", check=0).stdout.strip()
        probe = ("import fcntl, glob, os, sys\n"
                 "hits = []\n"
                 "for p in glob.glob(sys.argv[1] + '/**', recursive=True):\n"
                 "    try:\n"
                 "        with open(p) as f:\n"
                 "            if os.path.basename(p) == 'lock':\n"
                 "                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                 "            hits.append(p)\n"
                 "    except OSError:\n"
                 "        pass\n"
                 "print(len(hits))\n")
        nobody = subprocess.run([sys.executable, "-c", probe, root], capture_output=True,
                                text=True, user=65534, group=65534, extra_groups=[])
        assert nobody.stdout.strip() == "0", nobody
        m("rm", cid, check=0)
    finally:
        shutil.rmtree(parent)


# --- 10. /proc ------------------------------------------------------------------------

def test_proc_interrupts_is_masked(m):
    out = m("run", "--rm", "busybox", "sh", "-c", "wc -c < /proc/interrupts", check=0)
    assert out.stdout.strip() == "0"
