"""run and create: a container from an image, and the flags they share."""
import sys

import click

from minirun.commands import POSITIONAL, PULL_OPTION, store


RUN_OPTIONS = [
    PULL_OPTION,
    click.option("-e", "--env", multiple=True, metavar="KEY=VAL", help="Set an environment variable."),
    click.option("--env-file", multiple=True, help="Read KEY=VAL lines from a file."),
    click.option("-w", "--workdir", help="Working directory inside the container."),
    click.option("-u", "--user", help="USER[:GROUP], names or numeric ids from the image."),
    click.option("--hostname", help="The container's hostname."),
    click.option("--name", help="A name for the container."),
    click.option("--entrypoint", help="Override the image's ENTRYPOINT."),
    click.option("-i", "--interactive", is_flag=True, help="Keep stdin attached."),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal."),
    click.option("--rm", is_flag=True, help="Remove the container when it exits."),
    click.option("-v", "--volume", multiple=True, metavar="HOST:CTR[:ro]", help="Bind-mount a host path."),
    click.option("--tmpfs", multiple=True, metavar="PATH[:OPTS]", help="Mount a tmpfs."),
    click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only."),
    click.option("--cap-add", multiple=True, help="Add a capability (or ALL)."),
    click.option("--cap-drop", multiple=True, help="Drop a capability (or ALL)."),
    click.option("--privileged", is_flag=True, help="All capabilities, no masked or read-only paths."),
    click.option("--init", is_flag=True, help="Run tini as PID 1: it reaps orphans and forwards signals."),
    click.option("--device", multiple=True, metavar="HOST[:CTR[:rwm]]",
                 help="Give the container a host device."),
    click.option("--userns", type=click.Choice(["remap", "host"]),
                 help="remap: root inside is an unprivileged uid outside (default: the store's setting)."),
    click.option("--security-opt", multiple=True, metavar="seccomp=unconfined|PROFILE.json",
                 help="The seccomp profile (Docker's JSON format)."),
    click.option("--network", default="bridge", show_default=True,
                 help="bridge, none, host, container:ID, or a network's name."),
    click.option("-p", "--publish", multiple=True, metavar="[IP:]HOST:CTR[/PROTO]",
                 help="Publish a container's port on the host."),
    click.option("--dns", multiple=True, metavar="IP", help="A DNS server for /etc/resolv.conf."),
    click.option("--add-host", multiple=True, metavar="NAME:IP", help="An extra /etc/hosts line."),
    click.option("-m", "--memory", help="Memory limit (64m, 1g...)."),
    click.option("--memory-swap", help="Memory + swap limit; -1 for unlimited swap."),
    click.option("--cpus", help="CPUs, e.g. 0.5 for half a core."),
    click.option("--cpu-shares", type=int, help="Relative CPU weight (default 1024)."),
    click.option("--cpuset-cpus", help="CPUs allowed, e.g. 0-1 or 0,2."),
    click.option("--pids-limit", type=int, help="Most processes at once (-1: unlimited)."),
    click.option("--blkio-weight", type=int, help="Relative block I/O weight (10-1000)."),
    click.option("--skip", multiple=True, metavar="STEP",
                 help="Teaching only: leave a step of the start sequence out (implies --rm): "
                      "pid-namespace, mount-namespace, pivot-root, proc, cgroup-namespace, "
                      "capabilities."),
    click.argument("image"),
    click.argument("command", nargs=-1, type=click.UNPROCESSED),
]


def run_options(f):
    for option in reversed(RUN_OPTIONS):
        f = option(f)
    return f


def make_options(command, flags):
    from minirun.runtime.options import RunOptions
    return RunOptions(
        command=list(command), entrypoint=flags["entrypoint"], env=list(flags["env"]),
        env_files=list(flags["env_file"]), workdir=flags["workdir"], user=flags["user"],
        hostname=flags["hostname"], name=flags["name"], volumes=list(flags["volume"]),
        tmpfs=list(flags["tmpfs"]), read_only=flags["read_only"], cap_add=list(flags["cap_add"]),
        cap_drop=list(flags["cap_drop"]), privileged=flags["privileged"], tty=flags["tty"],
        interactive=flags["interactive"], init=flags["init"], devices=list(flags["device"]),
        security_opt=list(flags["security_opt"]), userns=flags["userns"],
        network=flags["network"],
        publish=list(flags["publish"]), dns=list(flags["dns"]), add_hosts=list(flags["add_host"]),
        rm=flags["rm"], memory=flags["memory"], memory_swap=flags["memory_swap"], cpus=flags["cpus"],
        cpu_shares=flags["cpu_shares"], cpuset_cpus=flags["cpuset_cpus"],
        pids_limit=flags["pids_limit"], blkio_weight=flags["blkio_weight"], skip=list(flags["skip"]),
        pull=flags["pull"])


def warn_if_skipping(flags):
    """--skip always says, before anything runs, that isolation is off."""
    from minirun.runtime.spec import SKIPPABLE
    for step in flags["skip"]:
        if step in SKIPPABLE:           # an unknown one is refused by build_spec
            click.echo(f"minirun: WARNING: --skip {step}: this container is not isolated: "
                       f"{SKIPPABLE[step]}", err=True)


@click.command(context_settings=POSITIONAL)
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the id.")
@run_options
def run(image, command, detach, **flags):
    """Run COMMAND in a new container from IMAGE."""
    from minirun.runtime import lifecycle
    s = store()
    if not detach:
        lifecycle.check_input_is_a_terminal(flags["tty"], flags["interactive"])
    warn_if_skipping(flags)
    monitor = lifecycle.Monitor(s) if detach else None    # it gets ready meanwhile
    try:
        cid = lifecycle.create(s, image, make_options(command, flags))
    except BaseException:
        if monitor:
            monitor.cancel()
        raise
    if detach:
        monitor.start(cid)
        click.echo(cid)
        return
    sys.exit(lifecycle.start_attached(s, cid))


@click.command(context_settings=POSITIONAL)
@run_options
def create(image, command, **flags):
    """Create a container from IMAGE without starting it; print its id."""
    from minirun.runtime import lifecycle
    warn_if_skipping(flags)
    click.echo(lifecycle.create(store(), image, make_options(command, flags)))
