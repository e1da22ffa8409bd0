"""The measuring half of scripts/bench-start-against."""
import os
import shutil
import sys

from benchlib import bench_store, time_interleaved

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
    med = time_interleaved(commands, n, envs)
    print(f"this checkout - {rev}: {med['this checkout'] - med[rev]:+.1f} ms")
finally:
    shutil.rmtree(work, ignore_errors=True)
