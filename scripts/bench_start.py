"""The measuring half of scripts/bench-start."""
import os
import shutil
import subprocess
import sys

from benchlib import bench_store, docker_image, runc_bundle, time_interleaved

n = int(sys.argv[1])
FLOOR = "python -c 'import click'"     # under any click CLI: start, import, exit
work, root, minirun = bench_store()
image = None
# "bridge": each run is minirun0's only user, so it makes the bridge and its
# rules and removes them at exit, as the last user does. "bridge in use": a
# network another container keeps up, the usual case once anything runs.
subprocess.run(minirun + ["network", "create", "benchnet"], check=True, capture_output=True)
keeper = subprocess.run(minirun + ["run", "-d", "--network", "benchnet", "busybox", "sleep", "3600"],
                        check=True, capture_output=True, text=True).stdout.strip()
try:
    bundle = runc_bundle(work, root, ["true"])
    commands = {
        "minirun --network none": lambda i: minirun + ["run", "--rm", "--network", "none",
                                                       "busybox", "true"],
        "minirun (bridge)": lambda i: minirun + ["run", "--rm", "busybox", "true"],
        "minirun (bridge in use)": lambda i: minirun + ["run", "--rm", "--network", "benchnet",
                                                        "busybox", "true"],
        "runc": lambda i: ["runc", "run", "--bundle", bundle, f"minirun-bench-{os.getpid()}-{i}"],
        FLOOR: lambda i: [sys.executable, "-c", "import click"],
    }
    image = docker_image(work, root)
    if image:
        commands["docker run --rm (bridge)"] = lambda i: ["docker", "run", "--rm", image, "true"]
    else:
        print("(docker: no daemon answers `docker info`; start dockerd to compare with it)")
    med = time_interleaved(commands, n)
    print(f"ratio minirun --network none / runc: {med['minirun --network none'] / med['runc']:.2f}x")
    print(f"ratio {FLOOR} / runc: {med[FLOOR] / med['runc']:.2f}x")
    if image:
        for name in ("minirun (bridge)", "minirun (bridge in use)"):
            print(f"ratio {name} / docker (bridge): "
                  f"{med[name] / med['docker run --rm (bridge)']:.2f}x")
finally:
    subprocess.run(minirun + ["rm", "-f", keeper], capture_output=True)
    subprocess.run(minirun + ["network", "rm", "benchnet"], capture_output=True)
    if image:
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
