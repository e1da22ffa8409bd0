"""The measuring half of scripts/bench-start."""
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import bench_store, runc_bundle

n = int(sys.argv[1])
work, root, minirun = bench_store()
try:
    bundle = runc_bundle(work, root, ["true"])

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
