"""The command line: parse flags, call the library, print. Nothing here
touches the kernel; every failure a user can cause prints one line."""
import os
import sys

import click

from minirun.errors import MinirunError

CONTEXT = {"help_option_names": ["-h", "--help"]}


def require_root():
    if os.geteuid() != 0:
        raise MinirunError("minirun must run as root: it creates namespaces, mounts and "
                           "cgroups (try: sudo minirun ...)")


def store():
    from minirun.image.store import Store
    return Store(click.get_current_context().find_root().params["root"])


@click.group(context_settings=CONTEXT)
@click.option("--root", envvar="MINIRUN_ROOT", default="/var/lib/minirun", show_default=True,
              help="Where images and containers are stored.")
@click.option("--explain", is_flag=True, help="Print each kernel step as it happens.")
def cli(root, explain):
    """minirun: containers from the kernel's own parts."""
    if explain:
        from minirun.linux import explain as trace
        trace.enable()


@cli.command(context_settings=dict(CONTEXT, allow_interspersed_args=False))
@click.option("-e", "--env", multiple=True, metavar="KEY=VAL", help="Set an environment variable.")
@click.option("--env-file", multiple=True, help="Read KEY=VAL lines from a file.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="USER[:GROUP], names or numeric ids from the image.")
@click.option("--hostname", help="The container's hostname.")
@click.option("--name", help="A name for the container.")
@click.option("--entrypoint", help="Override the image's ENTRYPOINT.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin attached.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("--rm", is_flag=True, help="Remove the container when it exits.")
@click.option("-v", "--volume", multiple=True, metavar="HOST:CTR[:ro]", help="Bind-mount a host path.")
@click.option("--tmpfs", multiple=True, metavar="PATH[:OPTS]", help="Mount a tmpfs.")
@click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only.")
@click.option("--cap-add", multiple=True, help="Add a capability (or ALL).")
@click.option("--cap-drop", multiple=True, help="Drop a capability (or ALL).")
@click.option("--privileged", is_flag=True, help="All capabilities, no masked or read-only paths.")
@click.option("--init", is_flag=True, help="Run a reaping, signal-forwarding init as PID 1.")
@click.option("--network", default="none", show_default=True, help="Network mode: none.")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(image, command, **flags):
    """Run COMMAND in a new container from IMAGE."""
    require_root()
    from minirun.runtime.options import RunOptions
    from minirun.runtime.run import run as run_container
    opts = RunOptions(
        command=list(command), entrypoint=flags["entrypoint"], env=list(flags["env"]),
        env_files=list(flags["env_file"]), workdir=flags["workdir"], user=flags["user"],
        hostname=flags["hostname"], name=flags["name"], volumes=list(flags["volume"]),
        tmpfs=list(flags["tmpfs"]), read_only=flags["read_only"], cap_add=list(flags["cap_add"]),
        cap_drop=list(flags["cap_drop"]), privileged=flags["privileged"], tty=flags["tty"],
        interactive=flags["interactive"], init=flags["init"], network=flags["network"],
        rm=flags["rm"])
    sys.exit(run_container(store(), image, opts))


@cli.command()
@click.option("-q", "--quiet", is_flag=True, help="Only image ids.")
def images(quiet):
    """List the images in the local store."""
    require_root()
    from minirun.image.embedded import ensure_embedded
    from minirun.image.listing import image_rows
    s = store()
    ensure_embedded(s, "busybox")
    rows = image_rows(s)
    if quiet:
        for row in rows:
            click.echo(row[2])
        return
    click.echo(f"{'REPOSITORY':<30} {'TAG':<12} {'IMAGE ID':<14} {'CREATED':<22} SIZE")
    for repo, tag, short_id, created, size in rows:
        click.echo(f"{repo:<30} {tag:<12} {short_id:<14} {created:<22} {size}")


@cli.group()
def dockerfile():
    """Dockerfile tools."""


@dockerfile.command("parse")
@click.option("--format", "fmt", type=click.Choice(["text", "buildkit-json"]), default="text",
              show_default=True, help="buildkit-json: the conformance corpus's record shape.")
@click.argument("file", type=click.Path(dir_okay=False))
def dockerfile_parse(fmt, file):
    """Parse FILE and print its instructions (nothing is executed)."""
    import json
    from minirun.image.dockerfile import parse_file
    result = parse_file(file)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if fmt == "buildkit-json":
        click.echo(json.dumps([i.record() for i in result.instructions], ensure_ascii=False))
        return
    for ins in result.instructions:
        flags = " ".join(ins.flags)
        where = f"{ins.start_line}" + (f"-{ins.end_line}" if ins.end_line != ins.start_line else "")
        form = " (exec form)" if ins.json_form else ""
        click.echo(f"{where:>7}  {ins.keyword.upper():<11} {flags + ' ' if flags else ''}"
                   f"{json.dumps(ins.args, ensure_ascii=False)}{form}")
        if ins.onbuild:
            click.echo(f"{'':>7}    ONBUILD {ins.onbuild.keyword.upper()} "
                       f"{json.dumps(ins.onbuild.args, ensure_ascii=False)}")
        for doc in ins.heredocs:
            click.echo(f"{'':>7}    heredoc {doc.name}: {len(doc.content.splitlines())} lines")


def main():
    try:
        cli.main(prog_name="minirun", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.UsageError as e:
        hint = f" (see 'minirun {e.ctx.command_path.split(' ', 1)[-1]} --help')" if e.ctx else ""
        click.echo(f"minirun: {e.format_message()}{hint}", err=True)
        sys.exit(125)
    except click.exceptions.Abort:
        sys.exit(130)
    except MinirunError as e:
        click.echo(f"minirun: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
