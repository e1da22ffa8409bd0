"""The measuring half of scripts/bench-oci."""
import os
import shutil
import sys

from benchlib import VENV_BIN, bench_store, runc_bundle, time_interleaved

n = int(sys.argv[1])
FLOOR = "3 x python -c 'import click'"
work, root, _ = bench_store()
try:
    bundle = runc_bundle(work, root, ["true"])
    state = os.path.join(work, "state")

    def lifecycle(runtime, i):
        cid = f"minirun-bench-{os.getpid()}-{i}"
        return ["sh", "-c", f"{runtime} --root {state} create --bundle {bundle} {cid} && "
                            f"{runtime} --root {state} start {cid} && "
                            f"{runtime} --root {state} delete --force {cid}"]
    oci = os.path.join(VENV_BIN, "minirun-oci")
    click = f"{sys.executable} -c 'import click'"
    commands = {
        "minirun-oci create+start+delete": lambda i: lifecycle(oci, i),
        "runc create+start+delete": lambda i: lifecycle("runc", i),
        FLOOR: ["sh", "-c", f"{click}; {click}; {click}"],
    }
    med = time_interleaved(commands, n)
    ours = med["minirun-oci create+start+delete"] - med[FLOOR]
    print(f"minirun-oci above the floor: {ours:.1f} ms")
    print(f"ratio (minirun-oci - floor) / runc: {ours / med['runc create+start+delete']:.2f}x")
finally:
    shutil.rmtree(work, ignore_errors=True)
