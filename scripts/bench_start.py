"""The measuring half of scripts/bench-start."""
import os
import shutil
import subprocess
import sys

import contextlib

from benchlib import bench_store, docker_daemon, docker_image, runc_bundle, time_interleaved

n = int(sys.argv[1])
FLOOR = "python -c 'import click'"     # under any click CLI: start, import, exit
work, root, minirun = bench_store()
image = None
# "bridge": each run is minirun0's only user, so it makes the bridge and its
# rules and removes them at exit, as the last user does. "bridge in use": a
# network another container keeps up, the usual case once anything runs.
subprocess.run(minirun + ["network", "create", "benchnet"], check=True, capture_output=True)
stack = contextlib.ExitStack()
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
    image = docker_image(work, root) if stack.enter_context(docker_daemon(work)) else None
    if image:
        commands["docker run --rm (bridge)"] = lambda i: ["docker", "run", "--rm", image, "true"]
    else:
        print("(docker: dockerd is not installed; scripts/setup --bench installs it)")
    med = time_interleaved(commands, n)
    none = med["minirun --network none"]
    print(f"ratio minirun --network none / runc: {none / med['runc']:.2f}x")
    print(f"ratio {FLOOR} / runc: {med[FLOOR] / med['runc']:.2f}x")
    print(f"above the floor, (minirun --network none - {FLOOR}) / runc: "
          f"{(none - med[FLOOR]) / med['runc']:.2f}x  (target 1.0x)")
    if image:
        for name in ("minirun (bridge)", "minirun (bridge in use)"):
            print(f"ratio {name} / docker (bridge): "
                  f"{med[name] / med['docker run --rm (bridge)']:.2f}x"
                  + ("  (target 0.3x)" if name.endswith("in use)") else ""))
finally:
    subprocess.run(minirun + ["rm", "-f", keeper], capture_output=True)
    subprocess.run(minirun + ["network", "rm", "benchnet"], capture_output=True)
    stack.close()                        # dockerd stops, with its images
    shutil.rmtree(work, ignore_errors=True)
