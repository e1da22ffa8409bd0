"""The measuring half of scripts/bench-start."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

n = int(sys.argv[1])
work = tempfile.mkdtemp(prefix="minirun-bench-")
root = os.path.join(work, "store")
minirun = [os.path.join(os.path.dirname(sys.executable), "minirun"), "--root", root]
try:
    subprocess.run(minirun + ["images", "-q"], check=True, capture_output=True)
    from minirun.image.store import Store
    rootfs = Store(root).load("busybox").layer_dirs[0]

    bundle = os.path.join(work, "bundle")
    os.mkdir(bundle)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"].update(terminal=False, args=["true"])
    config["root"] = {"path": rootfs, "readonly": True}
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)

    commands = {
        "minirun": lambda i: minirun + ["run", "--rm", "--network", "none", "busybox", "true"],
        "runc": lambda i: ["runc", "run", "--bundle", bundle, f"minirun-bench-{os.getpid()}-{i}"],
    }
    times = {name: [] for name in commands}
    for i in range(n + 3):             # interleaved, the first 3 rounds warm caches
        for name, command in commands.items():
            t = time.perf_counter()
            subprocess.run(command(i), check=True, stdin=subprocess.DEVNULL)
            if i >= 3:
                times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    for name, m in med.items():
        print(f"{name:<8} median {m:6.1f} ms   (min {min(times[name]) * 1000:.1f}, n={n})")
    print(f"ratio minirun/runc: {med['minirun'] / med['runc']:.2f}x")
finally:
    shutil.rmtree(work, ignore_errors=True)
