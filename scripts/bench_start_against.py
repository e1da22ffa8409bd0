"""The measuring half of scripts/bench-start-against."""
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import bench_store

old_tree, rev, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
work, root, minirun = bench_store()
args = ["--root", root, "run", "--rm", "--network", "none", "busybox", "true"]
commands = {
    "this checkout": [sys.executable, "-m", "minirun"] + args,
    f"{rev}": [sys.executable, "-m", "minirun"] + args,
    "python -c 'import click'": [sys.executable, "-c", "import click"],
}
envs = {name: dict(os.environ) for name in commands}
envs[rev]["PYTHONPATH"] = old_tree            # the same venv, the old package first
try:
    times = {name: [] for name in commands}
    for i in range(n + 3):                      # interleaved; 3 rounds warm the caches
        for name, command in commands.items():
            t = time.perf_counter()
            subprocess.run(command, check=True, stdin=subprocess.DEVNULL, env=envs[name])
            if i >= 3:
                times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    for name, m in med.items():
        print(f"{name:<27} median {m:6.1f} ms   (min {min(times[name]) * 1000:.1f}, n={n})")
    print(f"this checkout - {rev}: {med['this checkout'] - med[rev]:+.1f} ms")
finally:
    shutil.rmtree(work, ignore_errors=True)
