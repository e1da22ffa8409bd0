"""The measuring half of scripts/bench-scale: how each command's time grows
with the store (target: within 1.5x of the empty store's at 1,000
containers and 500 images), and what 50 running monitors cost."""
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import bench_store, time_interleaved

top = int(sys.argv[1])
work, root, minirun = bench_store()            # grows to 1,000 containers and 500 images
empty_work, _, empty = bench_store()           # stays empty, measured beside it
ctx = os.path.join(work, "ctx")
os.mkdir(ctx)
with open(os.path.join(ctx, "Dockerfile"), "w") as f:
    f.write("FROM busybox\nARG N=0\nLABEL n=$N\nRUN echo built > /built\n")


def run(args, store=minirun, **kw):
    return subprocess.run(store + args, check=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def spare(store):
    """A stopped container to remove, made outside the timing."""
    return subprocess.run(store + ["create", "--network", "none", "busybox", "true"],
                          check=True, capture_output=True, text=True).stdout.strip()


COMMANDS = {
    "ps -a": lambda store: ["ps", "-a"],
    "images": lambda store: ["images"],
    "run --rm": lambda store: ["run", "--rm", "--network", "none", "busybox", "true"],
    "rm": lambda store: ["rm", spare(store)],
    "build (cached)": lambda store: ["build", "-q", "--network", "none", ctx],
}


def measure(n=7):
    """{command: (median on the empty store, median on ours)}, the two
    stores taking turns, so that the VM's moods fall on both alike."""
    out = {}
    for name, args in COMMANDS.items():
        med = time_interleaved({f"{name}, empty store": lambda i, a=args: empty + a(empty),
                                f"{name}, this store": lambda i, a=args: minirun + a(minirun)}, n)
        out[name] = (med[f"{name}, empty store"], med[f"{name}, this store"])
    return out


try:
    for store in (minirun, empty):
        run(["build", "-q", "--network", "none", ctx], store)
    results, containers, images = {}, 0, 0
    for size in [n for n in (10, 100, 1000) if n <= top]:
        while containers < size:
            run(["create", "--network", "none", "busybox", "true"])
            containers += 1
        while images < size // 2:
            images += 1
            run(["build", "-q", "--network", "none", "--build-arg", f"N={images}",
                 "-t", f"scale/img:{images}", ctx])
        results[size] = measure()
        print(f"{size:5} containers, {size // 2:4} images, beside an empty store: " + "  ".join(
            f"{name} {ours:.1f}/{bare:.1f} ms {ours / bare:.2f}x"
            for name, (bare, ours) in results[size].items()), flush=True)

    run(["rm", *subprocess.run(minirun + ["ps", "-aq"], capture_output=True, text=True)
         .stdout.split()])
    t = time.perf_counter()
    ids = [subprocess.run(minirun + ["run", "-d", "--network", "none", "busybox", "sleep", "300"],
                          check=True, capture_output=True, text=True).stdout.strip()
           for _ in range(50)]
    wall = time.perf_counter() - t
    rss = []
    for line in subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True
                               ).stdout.splitlines():
        if "minirun.runtime.monitor" in line and root in line:
            rss.append(int(line.split()[0]) / 1024)
    print(f"50 containers running: started in {wall:.1f} s; monitors' RSS median "
          f"{statistics.median(rss):.1f} MB, max {max(rss):.1f} MB, total {sum(rss):.0f} MB "
          f"(target: each under 15 MB)")
    run(["rm", "-f", *ids])
finally:
    for store in (minirun, empty):
        subprocess.run(store + ["rm", "-f", *subprocess.run(
            store + ["ps", "-aq"], capture_output=True, text=True).stdout.split()],
            capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(empty_work, ignore_errors=True)
