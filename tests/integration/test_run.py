"""`minirun run`, checked from inside the container on the real kernel."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import MINIRUN, needs_root, foreign_pid_ns_processes

pytestmark = needs_root


# --- isolation ---------------------------------------------------------------

def test_command_is_pid_1_and_host_processes_are_invisible(minirun):
    out = minirun.sh("echo $$; ls /proc | grep -c '^[0-9]'")
    pid, count = out.split()
    assert pid == "1"
    # sh, and the ls and grep of its pipeline: nothing from the host
    assert int(count) <= 3
    assert str(os.getpid()) not in minirun.sh("ls /proc")


def test_hostname_is_the_containers_own(minirun):
    assert minirun.sh("hostname").strip() != socket.gethostname()
    assert minirun.sh("hostname; cat /etc/hostname", "--hostname", "box1").split() == ["box1", "box1"]


def test_network_none_has_only_loopback_up(minirun):
    out = minirun.sh("ls /sys/class/net; ip -o link show lo", "--network", "none")
    assert out.split()[0] == "lo" and "UP" in out
    assert "eth0" not in out


def test_ipc_and_mount_namespaces_differ_from_host(minirun):
    out = minirun.sh("for n in ipc mnt uts cgroup; do readlink /proc/self/ns/$n; done")
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("ipc", "mnt", "uts", "cgroup")]
    for inside, outside in zip(out.split(), host):
        assert inside != outside


def test_proc_sys_is_read_only_and_masked_paths_hidden(minirun):
    out = minirun("run", "--rm", "busybox", "sh", "-c",
                  "echo x > /proc/sys/kernel/hostname; cat /proc/timer_list | wc -c")
    assert "Read-only file system" in out.stderr
    assert out.stdout.strip() == "0"


def test_default_capabilities_are_dockers(minirun):
    out = minirun.sh("grep -E 'Cap(Eff|Bnd)' /proc/self/status")
    assert out.split() == ["CapEff:", "00000000a80425fb", "CapBnd:", "00000000a80425fb"]


def test_mount_needs_a_capability_the_container_lacks(minirun):
    out = minirun("run", "--rm", "busybox", "mount", "-t", "tmpfs", "none", "/tmp")
    assert out.returncode != 0 and "denied" in out.stderr.lower()
    assert minirun.sh("mount -t tmpfs none /tmp && echo ok", "--privileged") == "ok\n"


def test_cap_add_and_cap_drop(minirun):
    assert minirun.sh("ip link set lo down && echo ok", "--cap-add", "NET_ADMIN").strip() == "ok"
    out = minirun("run", "--rm", "--cap-drop", "CHOWN", "busybox", "chown", "nobody", "/tmp")
    assert out.returncode != 0


def test_no_new_privs_is_set(minirun):
    assert "NoNewPrivs:\t1" in minirun.sh("cat /proc/self/status")


# --- filesystem ----------------------------------------------------------------

def test_writes_land_in_upper_dir_never_in_the_image_layer(minirun, shared_root):
    layers = os.path.join(shared_root, "layers")
    before = subprocess.run(["find", layers], capture_output=True, text=True).stdout
    proc = minirun("run", "--name", "w1", "busybox", "sh", "-c",
                   "echo hello > /etc/written && rm /bin/ls", check=0)
    after = subprocess.run(["find", layers], capture_output=True, text=True).stdout
    assert before == after
    containers = os.path.join(shared_root, "containers")
    upper = [os.path.join(containers, c, "upper") for c in os.listdir(containers)
             if os.path.exists(os.path.join(containers, c, "upper", "etc", "written"))]
    assert len(upper) == 1, proc
    assert open(os.path.join(upper[0], "etc", "written")).read() == "hello\n"
    # the deletion is an overlay whiteout: a 0/0 character device
    assert os.stat(os.path.join(upper[0], "bin", "ls")).st_rdev == 0
    minirun("rm", "w1", check=0)


def test_rm_removes_the_container_directory(minirun, shared_root):
    containers = os.path.join(shared_root, "containers")
    before = set(os.listdir(containers))
    minirun.sh("touch /x")
    assert set(os.listdir(containers)) == before


def test_bind_volume_read_write_and_read_only(minirun, tmp_path):
    (tmp_path / "in").write_text("from host\n")
    out = minirun.sh("cat /data/in; echo back > /data/out", "-v", f"{tmp_path}:/data")
    assert out == "from host\n"
    assert (tmp_path / "out").read_text() == "back\n"
    proc = minirun("run", "--rm", "-v", f"{tmp_path}:/data:ro", "busybox", "touch", "/data/x")
    assert proc.returncode != 0 and "Read-only" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_tmpfs_and_read_only_root(minirun):
    assert "tmpfs on /scratch" in minirun.sh("touch /scratch/a && mount", "--read-only", "--tmpfs", "/scratch")
    proc = minirun("run", "--rm", "--read-only", "busybox", "touch", "/x")
    assert proc.returncode == 1 and "Read-only" in proc.stderr


def test_dev_is_minimal_and_works(minirun):
    out = minirun.sh("ls /dev; head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok")
    names = out.split()
    for node in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd",
                 "stdin", "stdout", "stderr"):
        assert node in names
    assert "sda" not in names and "vda" not in names
    assert "null-ok" in names


def test_etc_files_and_environment(minirun):
    out = minirun.sh("cat /etc/hosts; echo HOME=$HOME; echo FOO=$FOO; pwd",
                     "-e", "FOO=bar", "-w", "/tmp", "--hostname", "h1")
    assert "localhost" in out and "FOO=bar" in out and "HOME=/root" in out
    assert out.strip().endswith("/tmp")


def test_env_file(minirun, tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\nB=two words\n")
    assert minirun.sh('echo "$A|$B"', "--env-file", str(f)) == "1|two words\n"


# --- process -----------------------------------------------------------------

def test_user_by_name_and_by_number(minirun):
    assert minirun.sh("id -u; id -g", "-u", "nobody").split() == ["65534", "65534"]
    assert minirun.sh("id -u; id -g", "-u", "1234:33").split() == ["1234", "33"]
    assert minirun.sh("id -u; id -g", "-u", "www-data:mail").split() == ["33", "12"]
    # a non-root user holds no capabilities
    assert "CapEff:\t0000000000000000" in minirun.sh("cat /proc/self/status", "-u", "nobody")


def test_entrypoint_override(minirun):
    assert minirun("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b", check=0).stdout == "a b\n"


def test_exit_code_is_propagated(minirun):
    assert minirun("run", "--rm", "busybox", "sh", "-c", "exit 7").returncode == 7


def test_killed_by_signal_gives_128_plus_n(minirun):
    # with --init the shell is not PID 1, so it can die of its own SIGKILL
    assert minirun("run", "--rm", "--init", "busybox", "sh", "-c", "kill -9 $$").returncode == 137


def test_signals_to_minirun_are_forwarded(minirun):
    proc = minirun.popen("run", "--rm", "busybox", "sh", "-c",
                         "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
                         stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 42


def test_init_reaps_and_forwards(minirun):
    out = minirun.sh("ps -o pid,args | sed -n 2p", "--init")
    assert out.split()[:2] == ["1", "/sbin/docker-init"]
    proc = minirun.popen("run", "--rm", "--init", "busybox", "sh", "-c", "echo ready; exec sleep 100",
                         stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM


def test_tty_is_a_terminal(minirun):
    out = minirun.sh("test -t 0 && test -t 1 && echo tty; tty; stty size", "-t")
    assert out.replace("\r", "").split("\n")[:2] == ["tty", "/dev/pts/0"]
    assert minirun.sh("test -t 1 && echo tty || echo notty") == "notty\n"


def test_interactive_stdin(minirun):
    proc = minirun("run", "--rm", "-i", "busybox", "sh", "-c", "read line; echo got $line", input="hello\n")
    assert proc.stdout == "got hello\n"
    proc = minirun("run", "--rm", "busybox", "sh", "-c", "cat; echo end", input="ignored\n")
    assert proc.stdout == "end\n"


def test_stdin_that_arrives_in_pieces_reaches_the_container_whole(minirun):
    # A producer slower than the container: each piece is relayed, then the
    # relay waits for the next one (it closed the container's stdin after
    # the first 64 KiB once).
    proc = minirun.popen("run", "--rm", "-i", "--network", "none", "busybox", "wc", "-c",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    for _ in range(5):
        proc.stdin.write(b"x" * 100_000)
        proc.stdin.flush()
        time.sleep(0.2)
    proc.stdin.close()
    assert proc.stdout.read().strip() == b"500000"
    assert proc.wait(timeout=30) == 0


class Terminal:
    """minirun started on a pty of its own, as from a user's terminal."""

    def __init__(self, argv):
        import pty
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            self.resize(0, 40, 100)
            os.execv(sys.executable, argv)
        self.out = b""
        self.status = None

    def read_until(self, marker, timeout=10):
        import select
        deadline = time.time() + timeout
        while marker not in self.out and time.time() < deadline:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    self.out += os.read(self.fd, 4096)
                except OSError:
                    break
        return marker in self.out

    def wait(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            reaped, status = os.waitpid(self.pid, os.WNOHANG)
            if reaped:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            self.read_until(b"\0", timeout=0.1)
        return None

    @staticmethod
    def resize(fd, rows, cols):
        import fcntl
        import struct
        import termios
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self):
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_interactive_pty_shell(minirun):
    """An interactive shell on a real pty, with job control, as `run -it` gives."""
    term = Terminal(MINIRUN + ["--root", minirun.root, "run", "--rm", "-it", "busybox", "sh"])
    try:
        os.write(term.fd, b"echo $((6*7)); tty\n")
        assert term.read_until(b"42\r\n/dev/pts/0"), term.out
        os.write(term.fd, b"stty size\n")
        assert term.read_until(b"40 100"), term.out
        term.resize(term.fd, 50, 120)   # the kernel sends minirun SIGWINCH
        time.sleep(0.2)
        os.write(term.fd, b"stty size\n")
        assert term.read_until(b"50 120"), term.out
        os.write(term.fd, b"sleep 100 &\njobs\n")
        assert term.read_until(b"Running"), term.out
        os.write(term.fd, b"exit 5\n")
        assert term.wait() == 5, term.out
    finally:
        term.close()


# --- errors and cleanup ----------------------------------------------------------

@pytest.mark.parametrize("args, message, code", [
    (["busybox", "nosuchcmd"], 'exec: "nosuchcmd": executable file not found in $PATH', 127),
    (["--pull", "never", "nosuchimage", "true"], "unable to find image 'nosuchimage'", 125),
    (["127.0.0.1:1/nosuchimage", "true"], "127.0.0.1:1: cannot reach the registry", 125),
    (["-v", "nocolon", "busybox", "true"], "invalid volume specification 'nocolon'", 125),
    (["-v", "/no/such/path:/x", "busybox", "true"], "host path /no/such/path does not exist", 125),
    (["-u", "ghost", "busybox", "true"], "unable to find user ghost", 125),
    (["--bogus", "busybox", "true"], "No such option '--bogus'", 125),
    (["--cap-add", "FLY", "busybox", "true"], "unknown capability 'FLY'", 125),
    (["busybox", "/etc/passwd"], 'exec: "/etc/passwd": permission denied', 126),
])
def test_bad_input_is_one_clear_line(minirun, shared_root, args, message, code):
    before = set(os.listdir(os.path.join(shared_root, "containers")))
    proc = minirun("run", "--rm", *args)
    assert proc.returncode == code
    assert message in proc.stderr
    ours = [l for l in proc.stderr.splitlines() if l.startswith("minirun:")]
    assert len(ours) == 1 and "Traceback" not in proc.stderr, proc.stderr  # a pull's progress aside
    assert set(os.listdir(os.path.join(shared_root, "containers"))) == before


def test_not_root_is_refused(shared_root):
    from conftest import MINIRUN
    proc = subprocess.run(MINIRUN + ["--root", shared_root, "run", "busybox", "true"],
                          capture_output=True, text=True, user=65534,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert proc.returncode == 125 and "must run as root" in proc.stderr


def test_sigkill_of_minirun_leaves_nothing_behind(minirun, shared_root):
    containers = os.path.join(shared_root, "containers")
    before = set(os.listdir(containers))
    ns_before = foreign_pid_ns_processes()
    proc = minirun.popen("run", "--rm", "busybox", "sh", "-c", "echo ready; sleep 100",
                         stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    assert foreign_pid_ns_processes() - ns_before   # the container is running
    proc.kill()
    proc.wait()
    deadline = time.time() + 5
    while foreign_pid_ns_processes() - ns_before and time.time() < deadline:
        time.sleep(0.05)
    assert not foreign_pid_ns_processes() - ns_before
    # the next minirun sweeps the --rm container's directory
    minirun.sh("true")
    assert set(os.listdir(containers)) == before


def test_explain_prints_the_kernel_steps_in_order(minirun):
    proc = minirun("--explain", "run", "--rm", "busybox", "true", check=0)
    calls = [line.split("] ", 1)[1].split("(")[0] for line in proc.stderr.splitlines() if line.startswith("[explain")]
    order = ["unshare", "fork", "unshare", "mount", "pivot_root", "prctl", "setgroups", "execve"]
    positions = []
    for call in order:
        start = positions[-1] + 1 if positions else 0
        positions.append(calls.index(call, start))
    assert positions == sorted(positions)
    assert any("capset(" in line for line in proc.stderr.splitlines())


def test_explain_labels_each_step_with_its_side_and_number(minirun):
    """The trace and the code share one numbering: start.py's steps for the
    parent, child.py's for the child."""
    import re
    proc = minirun("--explain", "run", "--rm", "busybox", "true", check=0)
    labelled = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"\[explain \+\s*[\d.]+ms (\w+)\s+(\S+)\] (\w+)", line)
        if m:
            labelled.setdefault(m.group(3), (m.group(1), m.group(2)))
    assert labelled["fork"] == ("parent", "3")
    assert labelled["unshare"] == ("parent", "2")            # CLONE_NEWPID, before the fork
    assert labelled["close_range"] == ("child", "0")
    assert labelled["pivot_root"] == ("child", "3")
    assert labelled["capset"] == ("child", "4")
    assert labelled["seccomp"] == ("child", "5") and labelled["execve"] == ("child", "5")
    assert ("parent", "5") in {(side, step) for side, step in
                               re.findall(r"ms (\w+)\s+(\S+)\] write\(\"[^\"]*cgroup.procs", proc.stderr)}
