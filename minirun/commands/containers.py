"""Commands on containers that exist: start, exec, ps, inspect, logs, wait,
kill, stop, restart, rm, container prune, port, top, stats.
"""
import re
import sys

import click

from minirun.commands import POSITIONAL, store, store_with, table
from minirun.errors import MinirunError, UsageError


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Stay attached and exit with its status.")
@click.argument("container")
def start(container, attach):
    """Start a created or stopped container."""
    from minirun.runtime import lifecycle
    s = store()
    cid, _, _ = lifecycle.resolve(s, container)
    if attach:
        sys.exit(lifecycle.start_attached(s, cid))
    lifecycle.start_detached(s, cid)
    click.echo(container)


@click.command(context_settings=POSITIONAL)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin attached.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-e", "--env", multiple=True, metavar="KEY=VAL", help="Set an environment variable.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="USER[:GROUP].")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec(container, command, interactive, tty, env, workdir, user):
    """Run COMMAND inside a running container."""
    from minirun.runtime.exec import exec_in
    sys.exit(exec_in(store(), container, command, env=env, workdir=workdir, user=user,
                     tty=tty, interactive=interactive))


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only ids.")
@click.option("--no-trunc", is_flag=True, help="Whole ids and commands.")
def ps(show_all, quiet, no_trunc):
    """List containers."""
    from minirun.runtime import lifecycle
    rows = lifecycle.ps_rows(store(), show_all, truncate=not no_trunc)
    if quiet:
        for row in rows:
            click.echo(row[0])
        return
    table([("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")] + rows)


@click.command()
@click.option("-f", "--format", "fmt", metavar="'{{.Key.Key}}'",
              help="Print fields of each document ({{.Path}} as in Go templates; nothing else).")
@click.argument("targets", nargs=-1, required=True)
def inspect(targets, fmt):
    """Show a container's or an image's document (JSON)."""
    import json
    from minirun.errors import ContainerNotFound, ImageNotFound
    from minirun.runtime import lifecycle
    s = store_with(targets)
    docs = []
    for target in targets:
        try:
            docs.append(lifecycle.inspect(s, target))
        except ContainerNotFound:
            try:
                image = s.load(target)
            except ImageNotFound:
                raise MinirunError(f"no such container or image: {target!r}") from None
            docs.append({"Id": image.id, "RepoTags": [n for n, i in s.names().items() if i == image.id],
                         **image.config})
    if fmt is None:
        click.echo(json.dumps(docs, indent=4))
        return
    for doc in docs:
        click.echo(render(doc, fmt))


FIELD = r"\{\{\s*((?:\.[A-Za-z0-9_]+)+)\s*\}\}"       # compiled on first use


def render(doc, fmt):
    """`{{.State.Status}} {{.State.Pid}}` → "running 4242": each {{.Path}}
    replaced by that field, the one form of Docker's Go templates minirun reads."""
    import json
    if "{{" in re.sub(FIELD, "", fmt):
        raise UsageError(f"--format {fmt!r}: only field paths such as '{{{{.State.Pid}}}}' "
                         f"are understood")

    def field(m):
        value = doc
        for key in m.group(1).split(".")[1:]:
            if not isinstance(value, dict) or key not in value:
                raise UsageError(f"--format {fmt!r}: the document has no field {key!r}")
            value = value[key]
        return value if isinstance(value, str) else json.dumps(value)
    return re.sub(FIELD, field, fmt)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container exits.")
@click.option("--tail", default="all", help="Only the last N lines.")
@click.argument("container")
def logs(container, follow, tail):
    """Print what a detached container wrote."""
    from minirun.runtime import lifecycle
    if tail != "all" and not tail.isdigit():
        raise click.BadParameter(f"--tail {tail}: a number of lines, or all")
    n = None if tail == "all" else int(tail)
    for stream, text in lifecycle.log_entries(store(), container, follow, n):
        out = sys.stdout if stream == "stdout" else sys.stderr
        out.write(text)
        out.flush()


@click.command()
@click.argument("containers", nargs=-1, required=True)
def wait(containers):
    """Block until containers exit; print their exit codes."""
    from minirun.runtime import lifecycle
    s = store()
    for c in containers:
        code = lifecycle.wait(s, c)
        click.echo(code if code is not None else 0)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal to send.")
@click.argument("containers", nargs=-1, required=True)
def kill(containers, sig):
    """Send a signal to containers' PID 1."""
    from minirun.runtime import lifecycle
    signum = lifecycle.parse_signal(sig)
    s = store()
    for c in containers:
        lifecycle.kill(s, c, signum)
        click.echo(c)


STOP_TIMEOUT = click.option("-t", "--time", "timeout", default=10, show_default=True,
                            help="Seconds before SIGKILL.")


@click.command()
@STOP_TIMEOUT
@click.argument("containers", nargs=-1, required=True)
def stop(containers, timeout):
    """Stop containers: their stop signal, then SIGKILL after a timeout."""
    from minirun.runtime import lifecycle
    s = store()
    for c in containers:
        lifecycle.stop(s, c, timeout)
        click.echo(c)


@click.command()
@STOP_TIMEOUT
@click.argument("containers", nargs=-1, required=True)
def restart(containers, timeout):
    """Stop then start containers again (detached)."""
    from minirun.runtime import lifecycle
    s = store()
    for c in containers:
        cid = lifecycle.stop(s, c, timeout)
        lifecycle.start_detached(s, cid)
        click.echo(c)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill running containers first.")
@click.argument("containers", nargs=-1, required=True)
def rm(containers, force):
    """Remove containers (their writable layer, cgroup and state)."""
    from minirun.runtime import lifecycle
    s = store()
    failed = None
    for c in containers:
        try:
            lifecycle.remove(s, c, force)
            click.echo(c)
        except MinirunError as e:
            failed = e
            click.echo(f"minirun: {e}", err=True)
    if failed:
        sys.exit(failed.exit_code)


@click.group()
def container():
    """Manage containers."""


@container.command("prune")
def container_prune():
    """Remove every stopped container."""
    from minirun.runtime import lifecycle
    for cid in lifecycle.prune(store()):
        click.echo(f"deleted {cid}")


@click.command()
@click.argument("container")
def port(container):
    """The container's published ports."""
    from minirun.runtime import lifecycle
    for mapping in lifecycle.ports(store(), container):
        click.echo(str(mapping))


@click.command()
@click.argument("container")
def top(container):
    """The processes running in a container."""
    from minirun.runtime import lifecycle
    table([("PID", "UID", "TIME", "CMD")] + lifecycle.top(store(), container))


@click.command()
@click.option("--no-stream", is_flag=True, help="Print once and exit.")
@click.argument("containers", nargs=-1)
def stats(containers, no_stream):
    """CPU, memory and pids of running containers, from their cgroups."""
    from minirun.image.listing import human_size
    from minirun.runtime import lifecycle
    while True:
        rows = lifecycle.stats(store(), containers)
        click.echo(f"{'CONTAINER ID':<14}{'NAME':<16}{'CPU %':<9}{'MEM USAGE / LIMIT':<24}PIDS")
        for cid, name, cpu, mem, limit, pids in rows:
            usage = f"{human_size(mem)} / {human_size(limit) if limit else 'unlimited'}"
            click.echo(f"{cid:<14}{name:<16}{cpu:<9.2f}{usage:<24}{pids}")
        if no_stream:
            return
