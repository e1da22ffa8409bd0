"""Shared by the benchmarks: a throw-away store, and a runc bundle on the
same busybox rootfs, so minirun and runc start the very same files."""
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

VENV_BIN = os.path.dirname(sys.executable)


def bench_store():
    work = tempfile.mkdtemp(prefix="minirun-bench-")
    root = os.path.join(work, "store")
    minirun = [os.path.join(VENV_BIN, "minirun"), "--root", root]
    subprocess.run(minirun + ["images", "-q"], check=True, capture_output=True)
    return work, root, minirun


def runc_bundle(work, root, args):
    from minirun.image.store import Store
    bundle = os.path.join(work, "bundle")
    os.mkdir(bundle)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"].update(terminal=False, args=args)
    config["root"] = {"path": Store(root).load("busybox").layer_dirs[0], "readonly": True}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


@contextlib.contextmanager
def docker_daemon(work):
    """A Docker daemon of the benchmark's own (Debian's docker.io), started
    and stopped here: its data, socket and state under `work`, DOCKER_HOST
    pointing at it meanwhile. --iptables=false: it must not rewrite the
    host's firewall (Docker's FORWARD policy DROP would cut minirun's bridges
    off); a container's start on docker0 costs it the same without. Yields
    False when dockerd is not installed (scripts/setup --bench installs it)."""
    if not shutil.which("dockerd"):
        yield False
        return
    d = os.path.join(work, "docker")
    os.makedirs(d)
    sock = os.path.join(d, "sock")
    log = open(os.path.join(d, "log"), "w")
    daemon = subprocess.Popen(["dockerd", "--data-root", os.path.join(d, "data"),
                               "--exec-root", os.path.join(d, "exec"), "--pidfile",
                               os.path.join(d, "pid"), "-H", f"unix://{sock}",
                               "--iptables=false", "--ip6tables=false"],
                              stdout=log, stderr=log, start_new_session=True)
    os.environ["DOCKER_HOST"] = f"unix://{sock}"
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "info"], capture_output=True).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: see {d}/log")
            time.sleep(0.2)
        yield True
    finally:
        daemon.terminate()
        daemon.wait(60)
        del os.environ["DOCKER_HOST"]
        subprocess.run(["ip", "link", "del", "docker0"], capture_output=True)
        subprocess.run(["umount", "-R", os.path.join(d, "exec")], capture_output=True)
        log.close()


def docker_image(work, root):
    """Our busybox rootfs imported into a running Docker, so both start the
    same files; None when no Docker daemon answers."""
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode:
            return None
    except (OSError, subprocess.TimeoutExpired):
        return None
    from minirun.image.store import Store
    layer = Store(root).load("busybox").layer_dirs[0]
    name = "minirun-bench-busybox:latest"
    tar = subprocess.Popen(["tar", "-C", layer, "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", name], stdin=tar.stdout, check=True,
                   capture_output=True)
    tar.wait()
    return name


def time_interleaved(commands, n, envs=None):
    """{name: median ms} of running each command (name → argv) n times,
    interleaved so that the machine's moods fall on all alike; the first 3
    rounds only warm caches. Prints one line per command."""
    times = {name: [] for name in commands}
    for i in range(n + 3):
        for name, command in commands.items():
            argv = command(i) if callable(command) else command
            t = time.perf_counter()
            subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           env=(envs or {}).get(name))
            if i >= 3:
                times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    for name, m in med.items():
        print(f"{name:<27} median {m:6.1f} ms   (min {min(times[name]) * 1000:.1f}, n={n})")
    return med
