"""The measuring half of scripts/bench-lifecycle."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import bench_store, runc_bundle

# exits promptly on SIGTERM, so stop measures minirun rather than a timeout
SCRIPT = "trap 'exit 0' TERM; while :; do sleep 0.1; done"

n = int(sys.argv[1])
work, root, minirun = bench_store()
bundle = runc_bundle(work, root, ["sh", "-c", SCRIPT])


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


FLOOR = [sys.executable, "-c", "import click"]   # under any click command: start, import, exit


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def minirun_cycle(i):
    cid = run(minirun + ["run", "-d", "--network", "none", "busybox", "sh", "-c", SCRIPT])
    run(minirun + ["stop", cid])
    run(minirun + ["rm", cid])


def runc_cycle(i):
    name = f"minirun-bench-{os.getpid()}-{i}"
    subprocess.run(["runc", "run", "-d", "--bundle", bundle, name], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run(["runc", "kill", name, "TERM"])
    while "stopped" not in run(["runc", "state", name]):
        time.sleep(0.01)
    run(["runc", "delete", name])


try:
    ours, theirs, floor = [], [], []
    for i in range(n):                   # interleaved: the VM's moods fall on all alike
        ours.append(timed(lambda: minirun_cycle(i)))
        theirs.append(timed(lambda: runc_cycle(i)))
        floor.append(timed(lambda: subprocess.run(FLOOR, check=True)))
    ours, theirs, floor = (statistics.median(x) for x in (ours, theirs, floor))
    print(f"run -d + stop + rm, {n} containers, medians:")
    print(f"  minirun {ours * 1000:7.1f} ms per container")
    print(f"  runc    {theirs * 1000:7.1f} ms per container (run -d, kill TERM, delete)")
    print(f"  floor   {floor * 1000:7.1f} ms: python -c 'import click', paid by each of the 3 commands")
    print(f"  ratio minirun/runc: {ours / theirs:.2f}x; above the floor, "
          f"(minirun - 3 x floor)/runc: {(ours - 3 * floor) / theirs:.2f}x (target 0.8x)")

    t = time.perf_counter()
    procs = [subprocess.Popen(minirun + ["run", "-d", "--network", "none", "busybox", "sleep", "60"], stdout=subprocess.PIPE,
                              text=True) for _ in range(20)]
    ids = [p.communicate()[0].strip() for p in procs]
    wall = time.perf_counter() - t
    rss = []
    for cid in ids:
        with open(os.path.join(root, "containers", cid, "state.json")) as f:
            pid = json.load(f)["owner_pid"]           # its monitor
        with open(f"/proc/{pid}/status") as f:
            rss += [int(line.split()[1]) for line in f if line.startswith("VmRSS")]
    print(f"20 detached containers started at once: {wall * 1000:.0f} ms in all, "
          f"{wall / 20 * 1000:.0f} ms per container")
    print(f"  monitor RSS: median {statistics.median(rss) / 1024:.1f} MB, max {max(rss) / 1024:.1f} MB "
          f"(target: under 15 MB)")
    run(minirun + ["rm", "-f", *ids])
finally:
    shutil.rmtree(work, ignore_errors=True)
