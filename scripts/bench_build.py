"""The measuring half of scripts/bench-build."""
import os
import shutil
import statistics
import subprocess
import sys
import time

import contextlib

from benchlib import bench_store, docker_daemon, docker_image

n = int(sys.argv[1])
work, root, minirun = bench_store()
stack = contextlib.ExitStack()


def timed(command, **kwargs):
    t = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - t


def report(label, times):
    med = statistics.median(times) * 1000
    print(f"  {label:<34} median {med:8.1f} ms  (min {min(times) * 1000:.1f}, n={len(times)})")
    return med


def small_context():
    ctx = os.path.join(work, "small")
    os.makedirs(os.path.join(ctx, "app"))
    for i in range(20):
        with open(os.path.join(ctx, "app", f"f{i}.txt"), "w") as f:
            f.write(f"file {i}\n" * 100)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("ARG BASE=busybox\nFROM $BASE\nRUN echo built > /built.txt\n"
                "COPY app /app\nENV MODE=bench\nCMD [\"cat\", \"/built.txt\"]\n")
    return ctx


def peer():
    image = docker_image(work, root) if stack.enter_context(docker_daemon(work)) else None
    if image:
        return "docker build (classic)", image, lambda ctx, *flags: [
            "docker", "build", "-q", *flags, "--build-arg", f"BASE={image}", "-t",
            "minirun-bench-out", ctx], {"DOCKER_BUILDKIT": "0"}
    if shutil.which("podman"):
        return "podman build", None, None, None
    return None, None, None, None


try:
    ctx = small_context()
    peer_name, peer_image, peer_cmd, peer_env = peer()
    ours = lambda *flags: minirun + ["build", "-q", *flags, "-t", "bench-out", ctx]
    print("Small Dockerfile (FROM busybox, RUN, COPY, ENV, CMD):")
    floor = "python -c 'import click'"     # under any click CLI: start, import, exit
    rows = {"minirun --no-cache": [], "minirun cached": [], floor: []}
    if peer_cmd:
        rows[f"{peer_name} --no-cache"] = []
        rows[f"{peer_name} cached"] = []
    subprocess.run(ours(), check=True, stdout=subprocess.DEVNULL)
    for _ in range(n):
        rows["minirun --no-cache"].append(timed(ours("--no-cache")))
        rows["minirun cached"].append(timed(ours()))
        rows[floor].append(timed([sys.executable, "-c", "import click"]))
        if peer_cmd:
            env = dict(os.environ, **peer_env)
            rows[f"{peer_name} --no-cache"].append(timed(peer_cmd(ctx, "--no-cache"), env=env,
                                                         stderr=subprocess.DEVNULL))
            rows[f"{peer_name} cached"].append(timed(peer_cmd(ctx), env=env,
                                                     stderr=subprocess.DEVNULL))
    med = {k: report(k, v) for k, v in rows.items()}
    if peer_cmd:
        for kind in ("--no-cache", "cached"):
            print(f"  ratio minirun/{peer_name} {kind}: "
                  f"{med[f'minirun {kind}'] / med[f'{peer_name} {kind}']:.2f}x")
        print(f"  ratio {floor}/{peer_name} cached: {med[floor] / med[f'{peer_name} cached']:.2f}x")
        print(f"  above the floor, (minirun cached - {floor}) / {peer_name} cached: "
              f"{(med['minirun cached'] - med[floor]) / med[f'{peer_name} cached']:.2f}x  "
              f"(target 0.3x)")
    else:
        print("  (no docker daemon or podman to compare with)")

    print("COPY of a 10,000-file, 500 MB context:")
    big = os.path.join(work, "big")
    chunk = os.urandom(50_000)
    for d in range(100):
        os.makedirs(os.path.join(big, "data", f"d{d}"))
        for i in range(100):
            with open(os.path.join(big, "data", f"d{d}", f"f{i}"), "wb") as f:
                f.write(chunk[: 49_000 + (d * 100 + i) % 2000] + bytes([d, i % 256]))
    with open(os.path.join(big, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nCOPY data /data\n")
    copy_times, tar_times, cp_times = [], [], []
    build = minirun + ["build", "-q", "--no-cache", "-t", "bench-big", big]
    for _ in range(max(3, n // 2)):
        # Start each round with no copy left (a store without that layer, so
        # the copy is written, not found identical) and let the deletions age:
        # ext4 without a journal (as on some VMs) skips inodes freed in the
        # last dirty_expire seconds one by one when it creates files, which
        # would bill the deletions to whoever creates files next.
        shutil.rmtree(os.path.join(work, "cp"), ignore_errors=True)
        subprocess.run(minirun + ["rmi", "bench-big"], capture_output=True)
        subprocess.run(minirun + ["image", "prune"], capture_output=True)
        subprocess.run(["sync"])
        time.sleep(int(open("/proc/sys/vm/dirty_expire_centisecs").read()) / 100 + 1)
        tar_times.append(timed(["sh", "-c", f"tar -C {big} -cf - . | sha256sum"]))
        copy_times.append(timed(build))
        # what materializing the same files costs on this filesystem
        cp_times.append(timed(["cp", "-a", os.path.join(big, "data"), os.path.join(work, "cp")]))
    t_copy = report("minirun build (COPY data)", copy_times)
    t_tar = report("tar c | sha256sum", tar_times)
    t_cp = report("cp -a (the files alone)", cp_times)
    print(f"  ratio minirun / tar|sha256sum: {t_copy / t_tar:.2f}x  (target < 1.5)")
    print(f"  ratio minirun / cp -a: {t_copy / t_cp:.2f}x")

    print("Start of a 100-layer image beside a 1-layer one:")
    many = os.path.join(work, "many")
    os.makedirs(many)
    with open(os.path.join(many, "Dockerfile"), "w") as f:
        f.write("FROM busybox\n" + "".join(f"COPY f{i} /l/\n" for i in range(99)))
    for i in range(99):
        with open(os.path.join(many, f"f{i}"), "w") as f:
            f.write(str(i))
    subprocess.run(minirun + ["build", "-q", "-t", "many", many], check=True,
                   stdout=subprocess.DEVNULL)
    starts = {"1 layer": [], "100 layers": []}
    for _ in range(max(10, n * 2)):
        for label, image in (("1 layer", "busybox"), ("100 layers", "many")):
            starts[label].append(timed(minirun + ["run", "--rm", "--network", "none", image,
                                                  "true"]))
    s1, s100 = (report(k, v) for k, v in starts.items())
    print(f"  ratio 100/1 layers: {s100 / s1:.2f}x")
finally:
    stack.close()                        # dockerd stops, with its images
    shutil.rmtree(work, ignore_errors=True)
