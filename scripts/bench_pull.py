"""The measuring half of scripts/bench-pull.

pull: `minirun pull` after `rmi` + `image prune -a` (nothing of the image
left), beside `skopeo copy docker://… oci:DIR` into an empty directory.
skopeo is Go and only writes the blobs; minirun also verifies each blob,
unpacks it and checks its diff_id. Beside both, the floor of any Python
pull (pull_floor.py: the imports, then download, hash, gunzip, hash and
write each layer as one file, on a thread each): what no Python pull goes
below. push: `minirun push` beside `skopeo copy oci-archive:… docker://…`,
each into a fresh registry (nothing to skip)."""
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import bench_store  # noqa: E402
from tests.registries import Registry  # noqa: E402

rounds = int(sys.argv[1])
work, root, minirun = bench_store()


def run(cmd):
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def timed(cmd):
    t = time.perf_counter()
    run(cmd)
    return time.perf_counter() - t


def skopeo(*args):
    return ["skopeo", "--insecure-policy", *args]


try:
    ctx = os.path.join(work, "ctx")
    os.mkdir(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\n" + "".join(
            f"RUN head -c 25000000 /dev/urandom > /layer{i}\n" for i in range(4)))
    run(minirun + ["build", "-q", "--network", "none", "-t", "bench/big:1", ctx])
    archive = os.path.join(work, "big.tar")
    run(minirun + ["save", "--format", "oci", "-o", archive, "bench/big:1"])

    push, push_skopeo, pull, pull_skopeo, floor = [], [], [], [], []
    for i in range(rounds):
        for kind in ("minirun", "skopeo"):
            reg = Registry(os.path.join(work, f"registry-push-{i}-{kind}"))
            name = f"{reg.domain}/bench/big:1"
            if kind == "minirun":
                run(minirun + ["tag", "bench/big:1", name])
                push.append(timed(minirun + ["push", "-q", name]))
            else:
                push_skopeo.append(timed(skopeo("copy", "--dest-tls-verify=false",
                                                f"oci-archive:{archive}:1", f"docker://{name}")))
            reg.stop()

    reg = Registry(os.path.join(work, "registry"))
    name = f"{reg.domain}/bench/big:1"
    run(minirun + ["tag", "bench/big:1", name])
    run(minirun + ["push", "-q", name])
    oci = os.path.join(work, "oci")
    for i in range(rounds):
        run(minirun + ["image", "prune", "-a"])      # every image and layer goes
        pull.append(timed(minirun + ["pull", "-q", name]))
        shutil.rmtree(oci, ignore_errors=True)
        pull_skopeo.append(timed(skopeo("copy", "--src-tls-verify=false", f"docker://{name}",
                                        f"oci:{oci}:1")))
        shutil.rmtree(oci, ignore_errors=True)
        floor.append(timed([sys.executable, os.path.join(os.path.dirname(__file__), "pull_floor.py"),
                            name, oci]))
    reg.stop()

    def line(what, ours, theirs, peer, who="minirun"):
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{what:<5} {who:<13} {a * 1000:7.0f} ms   {peer} {b * 1000:7.0f} ms   "
              f"ratio {a / b:.2f}x   (medians of {rounds})")

    print("5 layers, ~100 MB of random data, through docker-registry on loopback:")
    line("pull", pull, pull_skopeo, "skopeo copy docker:// oci:     ")
    line("", floor, pull_skopeo, "skopeo copy docker:// oci:     ", "Python floor")
    print(f"      minirun above the Python floor: "
          f"{(statistics.median(pull) - statistics.median(floor)) * 1000:.0f} ms")
    line("push", push, push_skopeo, "skopeo copy oci-archive: docker://")
finally:
    shutil.rmtree(work, ignore_errors=True)
