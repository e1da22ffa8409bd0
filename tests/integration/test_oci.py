"""minirun-oci, the OCI door: runc's command line on OCI bundles, driven by
hand, by a private containerd (ctr run --runc-binary) and by podman
(--runtime), beside runc on the same bundles and images."""
import glob
import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from minirun.oci.config import default_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OCI = os.path.join(os.path.dirname(sys.executable), "minirun-oci")


@pytest.fixture(scope="module")
def busybox_layer(shared_root):
    return glob.glob(os.path.join(shared_root, "layers", "*", "diff"))[0]


@pytest.fixture
def bundle(tmp_path, busybox_layer):
    """A bundle: busybox's files and `minirun-oci spec`'s config, made to run
    without a terminal; tests change config as they need, then write()."""
    b = tmp_path / "bundle"
    b.mkdir()
    shutil.copytree(busybox_layer, b / "rootfs", symlinks=True)
    config = default_config()
    config["process"]["terminal"] = False

    class Bundle:
        path = str(b)

        def write(self, cfg=None):
            (b / "config.json").write_text(json.dumps(cfg or config))
    Bundle.config = config
    return Bundle()


@pytest.fixture
def oci(tmp_path):
    """minirun-oci on a state root of the test's own, logging JSON lines."""
    state = tmp_path / "state"
    log = tmp_path / "log.json"

    def run(*args, check=0, **kwargs):
        """Output is caught in files, not pipes: a container keeps create's
        stdio, and a pipe would not end until the container does."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            kwargs.setdefault("stdout", out)
            kwargs.setdefault("stderr", err)
            done = subprocess.run([OCI, "--root", str(state), "--log", str(log),
                                   "--log-format", "json", *args], text=True, timeout=60,
                                  **kwargs)
            out.seek(0)
            err.seek(0)
            done.stdout, done.stderr = out.read(), err.read()
        if check is not None:
            assert done.returncode == check, (args, done.returncode, done.stdout, done.stderr)
        return done
    run.state, run.log = state, log
    yield run
    for cid in os.listdir(state) if state.exists() else ():
        subprocess.run([OCI, "--root", str(state), "delete", "--force", cid])


def status(oci, cid):
    return json.loads(oci("state", cid).stdout)["status"]


def test_create_waits_for_start_then_runs_with_the_callers_stdio(oci, bundle, tmp_path):
    out = tmp_path / "out"
    bundle.config["process"]["args"] = ["sh", "-c", "echo started as $$; sleep 30"]
    bundle.write()
    with open(out, "w") as f:
        oci("create", "--bundle", bundle.path, "--pid-file", str(tmp_path / "pid"), "c1",
            stdout=f)
    pid = int((tmp_path / "pid").read_text())
    state = json.loads(oci("state", "c1").stdout)
    assert (state["status"], state["pid"], state["bundle"]) == ("created", pid, bundle.path)
    time.sleep(0.3)
    assert out.read_text() == ""                # waiting before execve: nothing ran
    assert open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"/")   # still minirun's python
    oci("start", "c1")
    deadline = time.monotonic() + 5
    while not out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.read_text() == "started as 1\n"  # PID 1 of its own namespace, on create's stdout
    assert status(oci, "c1") == "running"
    assert json.loads(oci("ps", "--format", "json", "c1").stdout) == [pid]
    assert oci("delete", "c1", check=1).stderr.count("\n") == 1      # running: refused
    oci("kill", "c1", "KILL")
    deadline = time.monotonic() + 5
    while status(oci, "c1") != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status(oci, "c1") == "stopped"
    oci("delete", "c1")
    assert os.listdir(oci.state) == []


def test_run_exec_pause_update(oci, bundle):
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["linux"]["resources"]["pids"] = {"limit": 50}
    bundle.write()
    oci("run", "--detach", "--bundle", bundle.path, "c2")
    done = oci("exec", "c2", "sh", "-c", "echo $(cat /sys/fs/cgroup/pids/pids.max); exit 3",
               check=3)
    assert done.stdout == "50\n"
    oci("update", "--pids-limit", "60", "c2")
    assert oci("exec", "c2", "cat", "/sys/fs/cgroup/pids/pids.max").stdout == "60\n"
    oci("pause", "c2")
    assert status(oci, "c2") == "paused"
    pid = json.loads(oci("state", "c2").stdout)["pid"]
    assert open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in ("D", "S")
    oci("resume", "c2")
    assert status(oci, "c2") == "running"
    listed = json.loads(oci("list", "--format", "json").stdout)
    assert [(s["id"], s["status"]) for s in listed] == [("c2", "running")]
    oci("delete", "--force", "c2")
    assert os.listdir(oci.state) == []


def test_only_preserved_fds_reach_the_container(oci, bundle, tmp_path):
    """The caller's other open files stay out (an engine's fd to its own
    state must not be reopened from the container); --preserve-fds lets
    fds 3.. through, as engines ask for sockets they pass on."""
    bundle.config["process"]["args"] = ["sh", "-c", "ls -l /proc/self/fd/ | grep -c host-file"]
    bundle.config["root"]["readonly"] = False
    bundle.write()
    host_file = tmp_path / "host-file"

    def run(cid, *flags):
        # fds 3 and 7 open on a host file in the caller, as an engine's would be
        return subprocess.run(
            ["sh", "-c", f'exec 3>>{host_file} 7>>{host_file}; exec "$@"', "sh", OCI, "--root",
             str(oci.state), "run", *flags, "--bundle", bundle.path, cid],
            capture_output=True, text=True, timeout=60).stdout.strip()
    assert run("f1") == "0"                     # seen: 2 without the closing of inherited fds
    assert run("f2", "--preserve-fds", "1") == "1"      # fd 3 only, not 7


def test_terminal_goes_to_the_console_socket(oci, bundle, tmp_path):
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "tty; echo cols=$(stty size)"]
    bundle.write()
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    oci("create", "--bundle", bundle.path, "--console-socket", path, "t1")
    conn, _ = server.accept()
    name, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    assert name == b"/dev/pts/0" and len(fds) == 1
    oci("start", "t1")
    out = b""
    while True:
        try:
            data = os.read(fds[0], 4096)
        except OSError:                 # EIO: the container's side is closed
            break
        if not data:
            break
        out += data
    assert out.splitlines()[0] == b"/dev/pts/0"
    oci("delete", "--force", "t1")


def test_hooks_run_at_their_points_with_the_state(oci, bundle, tmp_path):
    log = tmp_path / "hooks"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$1 $(cat)" >> {log}\n')
    hook.chmod(0o755)

    def at(name):
        return [{"path": str(hook), "args": ["hook.sh", name]}]
    bundle.config["hooks"] = {w: at(w) for w in ("prestart", "createRuntime", "createContainer",
                                                  "poststart", "poststop")}
    # a poststart hook that fails is warned about; the one after it still runs
    bundle.config["hooks"]["poststart"][:0] = [{"path": "/bin/false"}]
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    oci("create", "--bundle", bundle.path, "h1")
    created = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [w for w, _ in created] == ["createRuntime", "createContainer"]
    for _, state in created:
        state = json.loads(state)
        assert (state["id"], state["bundle"], state["status"]) == ("h1", bundle.path, "creating")
        assert state["pid"] == json.loads(oci("state", "h1").stdout)["pid"]
    started = oci("start", "h1")
    assert "warning: poststart hook /bin/false failed" in started.stderr
    oci("delete", "--force", "h1")
    later = [line.split(" ", 1) for line in log.read_text().splitlines()][2:]
    assert [w for w, _ in later] == ["prestart", "poststart", "poststop"]
    # prestart: called by `start` (config.md), before the program runs
    assert json.loads(later[0][1])["status"] == "created"


def test_a_failing_prestart_hook_fails_start_and_deletes(oci, bundle, tmp_path):
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    bundle.config["process"]["args"] = ["sh", "-c", "echo ran > /ran"]
    bundle.config["root"]["readonly"] = False
    bundle.write()
    oci("create", "--bundle", bundle.path, "h4")
    assert "prestart hook /bin/false failed" in oci("start", "h4", check=1).stderr
    assert not os.path.exists(os.path.join(bundle.path, "rootfs", "ran"))
    assert os.listdir(oci.state) == []


def test_a_failing_or_slow_hook_fails_create_and_leaves_nothing(oci, bundle, tmp_path):
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/sh",
                                                 "args": ["sh", "-c", "sleep 10"],
                                                 "timeout": 1}]}
    bundle.write()
    t0 = time.monotonic()
    done = oci("create", "--bundle", bundle.path, "h2", check=1)
    assert time.monotonic() - t0 < 8
    assert "createRuntime hook /bin/sh: still running after 1 s" in done.stderr
    assert os.listdir(oci.state) == []
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    bundle.write()
    assert "createRuntime hook /bin/false failed" in oci("create", "--bundle", bundle.path,
                                                          "h3", check=1).stderr
    assert os.listdir(oci.state) == []


BAD = [
    ("missing bundle", lambda b: shutil.rmtree(b.path), "no such directory"),
    ("not JSON", lambda b: open(os.path.join(b.path, "config.json"), "w").write("{"),
     "config.json: not valid JSON"),
    ("bad field", lambda b: b.write({**b.config, "linux": {
        **b.config["linux"], "resources": {"memory": {"limit": "1g"}}}}),
     'config.json: linux.resources.memory.limit: want an integer, got "1g"'),
    ("bad capability", lambda b: b.write({**b.config, "process": {
        **b.config["process"], "capabilities": {"bounding": ["CAP_FLY"]}}}),
     "config.json: process.capabilities.bounding[0]: unknown capability 'CAP_FLY'"),
    ("old version", lambda b: b.write({**b.config, "ociVersion": "0.6.0"}),
     "config.json: ociVersion: '0.6.0' is not supported"),
    ("mount", lambda b: b.write({**b.config, "mounts": [{"destination": "rel"}]}),
     "config.json: mounts[0].destination: want an absolute path"),
    # failing once its cgroup exists (seen leaving the cgroup behind)
    ("namespace of another kind", lambda b: b.write({**b.config, "linux": {
        **b.config["linux"], "namespaces": [{"type": "pid", "path": "/proc/self/ns/net"},
                                            {"type": "mount"}, {"type": "uts"}]}}),
     "cannot join the pid namespace at /proc/self/ns/net (is it one?)"),
]


@pytest.mark.parametrize("name,damage,message", BAD, ids=[b[0] for b in BAD])
def test_bad_bundles_get_one_line_in_the_log_and_leave_nothing(oci, bundle, name, damage,
                                                               message):
    bundle.write()
    damage(bundle)
    done = oci("create", "--bundle", bundle.path, "bad", check=1)
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    logged = [json.loads(line) for line in oci.log.read_text().splitlines()]
    assert logged[-1]["level"] == "error" and message in logged[-1]["msg"]
    assert not oci.state.exists() or os.listdir(oci.state) == []
    assert glob.glob("/sys/fs/cgroup/*/minirun/bad") + glob.glob("/sys/fs/cgroup/minirun/bad") == []


def test_ids_and_flags_are_checked(oci, bundle):
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.write()
    oci("create", "--bundle", bundle.path, "dup")
    assert "created" in oci("delete", "dup", check=1).stderr     # not stopped: refused
    assert "already exists" in oci("create", "--bundle", bundle.path, "dup", check=1).stderr
    for verb in ("start", "state", "kill", "delete", "pause", "ps"):
        assert "container nosuch does not exist" in oci(verb, "nosuch", check=1).stderr
    oci("delete", "--force", "nosuch")          # an engine cleaning up twice: no error
    assert "No such option '--frobnicate'" in oci("create", "--frobnicate", "x", check=1).stderr
    assert "No such option" in json.loads(oci.log.read_text().splitlines()[-1])["msg"]
    assert "No such command" in oci("checkpoint", "dup", check=1).stderr
    assert os.listdir(oci.state) == ["dup"]
    oci("delete", "--force", "dup")


def test_features_and_spec(oci, tmp_path):
    doc = json.loads(oci("features").stdout)
    assert doc["ociVersionMin"] == "1.0.0" and "createRuntime" in doc["hooks"]
    assert "CAP_SYS_ADMIN" in doc["linux"]["capabilities"] and "rbind" in doc["mountOptions"]
    oci("spec", "--bundle", str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["process"]["args"] == ["sh"]
    assert "exists" in oci("spec", "--bundle", str(tmp_path), check=1).stderr


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def test_a_user_namespace_maps_the_containers_root(oci, bundle, tmp_path):
    """uidMappings: root inside is uid 100000 outside. The exec FIFO must be
    writable by that uid (seen failing: mkfifo's mode went through the umask)."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["mounts"].append({"destination": "/shared", "type": "bind",
                                    "source": str(shared), "options": ["rbind", "rw"]})
    bundle.config["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map; "
                                        "touch /shared/made; stat -c %U /"]
    bundle.write()
    out = oci("run", "--bundle", bundle.path, "u1").stdout.split()
    assert out == ["0", "0", "100000", "65536", "nobody"]   # the host's root is nobody inside
    assert os.stat(shared / "made").st_uid == 100000


def test_without_a_mount_namespace_delete_leaves_no_mount_on_the_host(oci, bundle):
    """No mount namespace listed: the container shares the host's (chroot,
    as runc does), so its mounts land in the host's table; delete must take
    them all away (seen failing: a directory bound onto itself is not
    os.path.ismount)."""
    bundle.config["linux"]["namespaces"] = [{"type": "pid"}]
    bundle.config.pop("hostname")
    bundle.config["process"]["args"] = ["sh", "-c", "readlink /proc/1/ns/mnt"]
    bundle.write()
    ours = os.readlink("/proc/self/ns/mnt")
    oci("create", "--bundle", bundle.path, "m1")
    pid = json.loads(oci("state", "m1").stdout)["pid"]
    assert os.readlink(f"/proc/{pid}/ns/mnt") == ours
    assert mounts_under(bundle.path)                    # its /proc, /dev... on the host
    oci("start", "m1")
    oci("delete", "--force", "m1")
    assert mounts_under(bundle.path) == []


def test_namespaces_joined_by_path(oci, bundle):
    holder = subprocess.Popen(["unshare", "--mount", "--uts", "sleep", "60"])
    try:
        time.sleep(0.2)
        for ns in ("mnt", "uts"):
            assert os.readlink(f"/proc/{holder.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        bundle.config["linux"]["namespaces"] = [
            {"type": "pid"}, {"type": "mount", "path": f"/proc/{holder.pid}/ns/mnt"},
            {"type": "uts", "path": f"/proc/{holder.pid}/ns/uts"}]
        bundle.config["process"]["args"] = ["sleep", "30"]
        bundle.write()
        oci("run", "--detach", "--bundle", bundle.path, "j1")
        pid = json.loads(oci("state", "j1").stdout)["pid"]
        for ns in ("mnt", "uts"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{holder.pid}/ns/{ns}")
        assert subprocess.run(["nsenter", "-t", str(holder.pid), "--uts", "hostname"],
                              capture_output=True, text=True).stdout == "minirun\n"
        oci("delete", "--force", "j1")
    finally:
        holder.kill()
        holder.wait()


def test_a_user_namespace_joined_by_path(oci, bundle):
    """Its maps are its own (here: the container's root is uid 100000 of the
    host); minirun joins it last, after the mounts, as one it made."""
    holder = subprocess.Popen(["unshare", "--user", "sleep", "60"])
    try:
        time.sleep(0.2)
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{holder.pid}/{name}", "w") as f:
                f.write("0 100000 65536")
        bundle.config["linux"]["namespaces"].append(
            {"type": "user", "path": f"/proc/{holder.pid}/ns/user"})
        bundle.config["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map"]
        bundle.write()
        assert oci("run", "--bundle", bundle.path, "ju").stdout.split() == \
            ["0", "0", "100000", "65536"]
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("propagation,seen", [("shared", "yes"), ("private", "no"),
                                              ("unbindable", "refused")])
def test_rootfs_propagation_is_the_containers_root(oci, bundle, propagation, seen):
    """Inside: bind / onto /b, then mount a tmpfs on /t; with a shared root
    the bind sees it. Nothing reaches the host's mount table either way."""
    bundle.config["linux"]["rootfsPropagation"] = propagation
    bundle.config["root"]["readonly"] = False
    for key in ("bounding", "effective", "permitted"):
        bundle.config["process"]["capabilities"][key].append("CAP_SYS_ADMIN")
    bundle.config["process"]["args"] = ["sh", "-c", """
        mkdir /b /t && mount --rbind / /b 2>/dev/null || { echo refused; exit; }
        mount -t tmpfs t /t && touch /t/x
        if [ -e /b/t/x ]; then echo yes; else echo no; fi"""]
    bundle.write()
    before = mounts_under("/")
    assert oci("run", "--bundle", bundle.path, "p1").stdout == seen + "\n"
    assert mounts_under("/") == before


def block_device():
    """major, minor of a whole block device of this machine, if it has one."""
    for name in sorted(os.listdir("/sys/block"), key=lambda n: n.startswith(("loop", "ram"))):
        with open(f"/sys/block/{name}/dev") as f:
            return [int(x) for x in f.read().split(":")]
    return None


def test_resources_beyond_dockers_flags_reach_the_cgroup(oci, bundle):
    from minirun.linux import cgroups
    driver = cgroups.detect()
    device = block_device()
    resources = bundle.config["linux"]["resources"]
    resources["memory"] = {"limit": 64 << 20, "reservation": 32 << 20}
    resources["cpu"] = {"mems": "0"}
    if device:
        resources["blockIO"] = {"throttleReadBpsDevice": [
            {"major": device[0], "minor": device[1], "rate": 1048576}]}
    if driver.version == 1:
        resources["memory"].update(swappiness=10, disableOOMKiller=True)
    bundle.config["devices"] = []
    bundle.config["linux"]["devices"] = [{"path": "/dev/fifo", "type": "p", "fileMode": 0o640,
                                          "uid": 7, "gid": 8}]
    bundle.config["process"]["args"] = ["sh", "-c", "stat -c '%F %a %u %g' /dev/fifo; sleep 30"]
    bundle.write()
    oci("create", "--bundle", bundle.path, "r1")
    name = json.loads((oci.state / "r1" / "state.json").read_text())["cgroup"]

    def read(controller, filename):
        path = driver.path(name, controller) if driver.version == 1 else driver.path(name)
        with open(os.path.join(path, filename)) as f:
            return f.read().strip()
    if driver.version == 1:
        assert read("memory", "memory.soft_limit_in_bytes") == str(32 << 20)
        assert read("memory", "memory.swappiness") == "10"
        assert "oom_kill_disable 1" in read("memory", "memory.oom_control")
        assert read("cpuset", "cpuset.mems") == "0"
        if device:
            assert read("blkio", "blkio.throttle.read_bps_device") == "%d:%d 1048576" % tuple(device)
    else:
        assert read("", "memory.low") == str(32 << 20)
        assert read("", "cpuset.mems") == "0"
        if device:
            assert "rbps=1048576" in read("", "io.max")
    with tempfile.TemporaryFile("w+") as out:
        oci("delete", "--force", "r1")
        bundle.config["process"]["args"] = ["stat", "-c", "%F %a %u %g", "/dev/fifo"]
        bundle.write()
        oci("run", "--bundle", bundle.path, "r2", stdout=out)
        out.seek(0)
        assert out.read() == "fifo 640 7 8\n"


def test_what_minirun_cannot_give_is_named_before_anything_starts(oci, bundle):
    """A capability minirun does not hold (its bounding set lacks it, as this
    VM's root lacks CAP_SYS_RESOURCE) is named in one line; python-prctl's
    missing CAP_CHECKPOINT_RESTORE is known by name."""
    caps = bundle.config["process"]["capabilities"]
    caps["bounding"] += ["CAP_CHECKPOINT_RESTORE", "CAP_SYS_NICE"]
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    drop = ("import os, sys, prctl; prctl.capbset_drop(prctl.CAP_SYS_NICE); "
            "os.execv(sys.argv[1], sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", drop, OCI, "--root", str(oci.state), "run",
                           "--bundle", bundle.path, "k1"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr == ("minirun-oci: config.json: process.capabilities.bounding: "
                           "CAP_SYS_NICE: minirun does not hold it (not in its bounding set), "
                           "so it cannot give it\n")
    caps["bounding"].remove("CAP_SYS_NICE")
    bundle.write()
    oci("run", "--bundle", bundle.path, "k2")


def test_a_profile_that_denies_getcwd_still_starts(oci, bundle):
    """Without noNewPrivileges the filter is loaded before the working
    directory is checked; a profile may deny getcwd (runtime-tools'
    linux_seccomp does), which must not read as "outside the root"."""
    bundle.config["process"]["noNewPrivileges"] = False
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}
    bundle.config["process"]["args"] = ["sh", "-c", "grep ^Seccomp: /proc/self/status"]
    bundle.write()
    assert oci("run", "--bundle", bundle.path, "s1").stdout.split() == ["Seccomp:", "2"]


# --- real engines ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def busybox_archive(shared_root, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("archive") / "busybox.tar")
    subprocess.run([sys.executable, "-m", "minirun", "--root", shared_root, "save", "-o", path,
                    "busybox"], check=True)
    return path


def recorder(directory):
    """A runtime binary that notes each call (its arguments), then is minirun-oci."""
    path = os.path.join(directory, "minirun-oci-recorded")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\necho "$*" >> {directory}/calls\nexec {OCI} "$@"\n')
    os.chmod(path, 0o755)
    return path


def verbs(directory):
    """The verbs the engine called, global flags left out."""
    out = []
    with open(os.path.join(directory, "calls")) as f:
        for line in f:
            words = line.split()
            while words and words[0].startswith("--"):
                words = words[2:] if words[0] in ("--root", "--log", "--log-format") else words[1:]
            out.append(words[0])
    return out


@pytest.fixture(scope="module")
def containerd(busybox_archive):
    """A private containerd: own root, state and socket in a temporary
    directory, a namespace named for minirun (so the leak check sees its
    cgroups), stopped after."""
    if not shutil.which("containerd"):
        pytest.fail("containerd is not installed: run scripts/setup --test")
    d = tempfile.mkdtemp(prefix="minirun-containerd-")
    sock = os.path.join(d, "containerd.sock")
    with open(os.path.join(d, "config.toml"), "w") as f:
        f.write(f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
                f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
                f'[plugins."io.containerd.grpc.v1.cri"]\n  disable_cgroup = true\n')
    server = subprocess.Popen(["containerd", "--config", os.path.join(d, "config.toml")],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "log"), "w"))
    namespace = f"minirun-test-{os.getpid()}"

    def ctr(*args, check=0, **kwargs):
        kwargs.setdefault("capture_output", True)
        done = subprocess.run(["ctr", "-a", sock, "-n", namespace, *args], text=True,
                              timeout=60, **kwargs)
        if check is not None:
            assert done.returncode == check, (args, done.returncode, done.stdout, done.stderr)
        return done
    for _ in range(100):
        if os.path.exists(sock) and ctr("version", check=None).returncode == 0:
            break
        time.sleep(0.1)
    ctr("images", "import", busybox_archive)
    ctr.runtime = recorder(d)
    ctr.dir = d
    ctr.namespace = namespace
    yield ctr
    server.terminate()
    server.wait(10)
    for shim in subprocess.run(["pgrep", "-f", f"containerd-shim.*{d}"], capture_output=True,
                               text=True).stdout.split():
        os.kill(int(shim), signal.SIGKILL)
    for top in glob.glob(f"/sys/fs/cgroup/*/{namespace}"):
        os.rmdir(top)
    shutil.rmtree(f"/run/containerd/runc/{namespace}", ignore_errors=True)
    subprocess.run(["umount", "-R", d], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


IMAGE = "docker.io/library/busybox:latest"


@pytest.fixture
def ctr(containerd):
    """containerd for one test; the cgroups it makes for its namespace go
    after each test, as the leak check wants."""
    yield containerd
    for top in glob.glob(f"/sys/fs/cgroup/*/{containerd.namespace}"):
        os.rmdir(top)


def test_containerd_runs_minirun(ctr):
    done = ctr("run", "--rm", "--runc-binary", ctr.runtime, "--env", "GREETING=hello", IMAGE,
               "r1", "sh", "-c", "echo $GREETING from containerd; exit 7", check=7)
    assert done.stdout == "hello from containerd\n"
    assert verbs(ctr.dir)[:2] == ["create", "start"]
    assert set(verbs(ctr.dir)) <= {"create", "start", "delete"}


def test_containerd_detached_exec_ps_pause_kill(ctr):
    ctr("run", "-d", "--memory-limit", str(32 << 20), "--runc-binary", ctr.runtime, IMAGE, "d1",
        "sleep", "300")
    try:
        done = ctr("task", "exec", "--exec-id", "e1", "d1", "sh", "-c", "echo in; exit 4",
                   check=4)
        assert done.stdout == "in\n"
        # -t: ctr wants a terminal of its own, so give it one
        main, sub = pty.openpty()
        tty_exec = subprocess.run(["ctr", "-a", os.path.join(ctr.dir, "containerd.sock"), "-n",
                                   ctr.namespace, "task", "exec", "-t",
                                   "--exec-id", "e2", "d1", "tty"],
                                  stdin=sub, stdout=sub, stderr=sub, timeout=30)
        os.close(sub)
        assert tty_exec.returncode == 0
        assert b"/dev/pts/" in os.read(main, 4096)
        os.close(main)
        pids = ctr("task", "ps", "d1").stdout.split()
        pid = int(ctr("task", "ls").stdout.split("d1")[1].split()[0])
        assert str(pid) in pids
        cgroup = open(f"/proc/{pid}/cgroup").read()
        memory = [line.split(":")[2] for line in cgroup.splitlines() if ":memory:" in line]
        if memory:          # cgroup v1 here; on v2 the unified line says the same
            limit = open(f"/sys/fs/cgroup/memory{memory[0]}/memory.limit_in_bytes").read()
            assert int(limit) == 32 << 20
        ctr("task", "pause", "d1")
        assert "PAUSED" in ctr("task", "ls").stdout
        ctr("task", "resume", "d1")
        assert "RUNNING" in ctr("task", "ls").stdout
        ctr("task", "kill", "-s", "KILL", "d1")
        deadline = time.monotonic() + 10
        while "STOPPED" not in ctr("task", "ls").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        ctr("task", "delete", "d1")
    finally:
        ctr("task", "delete", "-f", "d1", check=None)
        ctr("containers", "rm", "d1", check=None)
    called = set(verbs(ctr.dir))
    assert {"create", "start", "exec", "ps", "pause", "resume", "kill", "delete"} <= called


@pytest.fixture(scope="module")
def podman(busybox_archive, tmp_path_factory):
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: run scripts/setup --test")
    d = str(tmp_path_factory.mktemp("podman"))
    base = ["podman", "--root", f"{d}/root", "--runroot", f"{d}/run", "--cgroup-manager",
            "cgroupfs", "--events-backend", "file"]
    subprocess.run(base + ["load", "-i", busybox_archive], check=True, capture_output=True)

    def podman(runtime, *args, check=0):
        done = subprocess.run(base + ["--runtime", runtime, *args], capture_output=True,
                              text=True, timeout=90)
        if check is not None:
            assert done.returncode == check, (args, done.returncode, done.stdout, done.stderr)
        return done
    podman.runtime = recorder(d)
    podman.dir = d
    yield podman
    subprocess.run(base + ["rm", "-af"], capture_output=True)
    subprocess.run(["umount", "-R", d], capture_output=True)
    for top in glob.glob("/sys/fs/cgroup/*/libpod_parent"):
        subprocess.run(["find", top, "-depth", "-type", "d", "-exec", "rmdir", "{}", ";"],
                       capture_output=True)


# This host's root lacks CAP_SYS_RESOURCE: podman's default rlimits would be refused.
LIMITS = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


@pytest.mark.parametrize("runtime", ["minirun-oci", "runc"])
def test_podman_runs_it_like_runc(podman, runtime):
    binary = podman.runtime if runtime == "minirun-oci" else shutil.which("runc")
    done = podman(binary, "run", "--rm", *LIMITS, "localhost/busybox:latest", "sh", "-c",
                  "echo hello from podman; exit 5", check=5)
    assert done.stdout == "hello from podman\n"
    name = f"p-{runtime}"
    podman(binary, "run", "-d", "--name", name, *LIMITS, "localhost/busybox:latest",
           "sleep", "300")
    assert podman(binary, "exec", name, "sh", "-c", "echo $$; exit 3", check=3).stdout != ""
    podman(binary, "stop", "-t", "1", name)
    podman(binary, "rm", name)
    if runtime == "minirun-oci":
        assert {"create", "start", "exec", "kill", "delete"} <= set(verbs(podman.dir))
