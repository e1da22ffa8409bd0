"""The measuring half of scripts/bench-scale: how each command's time grows
with the store (target: within 1.5x of the empty store's at 1,000
containers and 500 images), and what 50 running monitors cost."""
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import bench_store

top = int(sys.argv[1])
work, root, minirun = bench_store()
ctx = os.path.join(work, "ctx")
os.mkdir(ctx)
with open(os.path.join(ctx, "Dockerfile"), "w") as f:
    f.write("FROM busybox\nARG N=0\nLABEL n=$N\nRUN echo built > /built\n")


def run(args, **kw):
    return subprocess.run(minirun + args, check=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def median_ms(args, n=7, before=None):
    times = []
    for _ in range(n):
        if before:
            before()
        t = time.perf_counter()
        run(args() if callable(args) else args)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def spare():
    """A stopped container to remove, made outside the timing."""
    out = subprocess.run(minirun + ["create", "--network", "none", "busybox", "true"],
                         check=True, capture_output=True, text=True).stdout.strip()
    spare.ids.append(out)


spare.ids = []
COMMANDS = {
    "ps -a": lambda: ["ps", "-a"],
    "images": lambda: ["images"],
    "run --rm": lambda: ["run", "--rm", "--network", "none", "busybox", "true"],
    "rm": lambda: ["rm", spare.ids.pop()],
    "build (cached)": lambda: ["build", "-q", "--network", "none", ctx],
}


def measure():
    return {name: median_ms(args, before=spare if name == "rm" else None)
            for name, args in COMMANDS.items()}


try:
    run(["build", "-q", "--network", "none", ctx])
    sizes = [0] + [n for n in (10, 100, 1000) if n <= top]
    results, containers, images = {}, 0, 0
    for size in sizes:
        while containers < size:
            run(["create", "--network", "none", "busybox", "true"])
            containers += 1
        while images < size // 2:
            images += 1
            run(["build", "-q", "--network", "none", "--build-arg", f"N={images}",
                 "-t", f"scale/img:{images}", ctx])
        results[size] = measure()
        print(f"{size:5} containers, {size // 2:4} images: " + "  ".join(
            f"{name} {ms:6.1f} ms" for name, ms in results[size].items()), flush=True)
    print("ratio to the empty store:")
    for size in sizes[1:]:
        print(f"{size:5}: " + "  ".join(f"{name} {results[size][name] / results[0][name]:.2f}x"
                                        for name in COMMANDS))

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
    subprocess.run(minirun + ["rm", "-f", *subprocess.run(
        minirun + ["ps", "-aq"], capture_output=True, text=True).stdout.split()],
        capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
