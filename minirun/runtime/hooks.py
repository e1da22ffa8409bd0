"""OCI hooks: programs a bundle's config.json asks the runtime to run at
points of a container's life (spec.Hooks says which, and when).

Each runs with the container's state (the OCI state JSON) on its stdin,
its own args and env, and a timeout; one that fails, or overruns, stops
what it guards (a create-time hook fails the create, a prestart hook the
start). poststart and poststop failures are only warned about, and the
hooks after them still run: the container has already started or gone.
"""
import json
import os
import signal
import subprocess

from minirun.errors import MinirunError
from minirun.linux import explain


def run(hooks, state, when):
    """Run each hook of `hooks` in order, the container's `state` on stdin;
    the first to fail stops the rest (MinirunError)."""
    for hook in hooks:
        run_hook(hook, state, when)


def run_warning(hooks, state, when):
    """poststart and poststop: every hook runs whatever the others did; the
    failures come back as warnings (runtime spec, lifecycle)."""
    warnings = []
    for hook in hooks:
        try:
            run_hook(hook, state, when)
        except MinirunError as e:
            warnings.append(f"warning: {e}")
    return warnings


def run_hook(hook, state, when):
    """One hook, its own process group, killed whole at its timeout."""
    explain.step(f"{when} hook: {hook.path} {hook.args[1:]}", "OCI runtime spec: hooks")
    try:
        proc = subprocess.Popen(hook.args or [hook.path], executable=hook.path,
                                env=dict(e.split("=", 1) for e in hook.env if "=" in e),
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        raise MinirunError(f"{when} hook {hook.path}: {e.strerror}") from None
    try:
        _, err = proc.communicate(json.dumps(state).encode(), timeout=hook.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)       # the hook and whatever it started
        proc.communicate()
        raise MinirunError(f"{when} hook {hook.path}: still running after "
                           f"{hook.timeout} s (its timeout): killed") from None
    if proc.returncode != 0:
        said = err.decode(errors="replace").strip().splitlines()
        raise MinirunError(f"{when} hook {hook.path} failed (exit status "
                           f"{proc.returncode})" + (f": {said[-1]}" if said else ""))
