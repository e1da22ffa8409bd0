"""The command line: parse flags, call the library, print. Nothing here
touches the kernel; every failure a user can cause prints one line."""
import errno
import os
import re
import sys

import click

from minirun.errors import MinirunError, UsageError, exit_now

CONTEXT = {"help_option_names": ["-h", "--help"]}


def require_root():
    if os.geteuid() != 0:
        raise MinirunError("minirun must run as root: it creates namespaces, mounts and "
                           "cgroups (try: sudo minirun ...)")


STORE_ROOT = []       # the store this command uses, for "no space left" messages


def store():
    """The store this command works on; only root may (its files are root's,
    0700, and every container step needs root anyway)."""
    require_root()
    from minirun.image.store import Store
    s = Store(click.get_current_context().find_root().params["root"])
    STORE_ROOT[:] = [s.root]
    s.keep_private()
    return s


def store_with(refs):
    """The store, with the embedded images among `refs` made if not yet."""
    from minirun.image.embedded import ensure_embedded, is_embedded
    s = store()
    for ref in refs:
        if is_embedded(ref):
            ensure_embedded(s, ref)
    return s


@click.group(context_settings=CONTEXT)
@click.option("--root", envvar="MINIRUN_ROOT", default="/var/lib/minirun", show_default=True,
              help="Where images and containers are stored.")
@click.option("--explain", is_flag=True, help="Print each kernel step as it happens.")
def cli(root, explain):
    """minirun: containers from the kernel's own parts."""
    if explain:
        from minirun.linux import explain as trace
        trace.enable()


PULL_OPTION = click.option("--pull", default="missing", show_default=True,
                           type=click.Choice(["missing", "always", "never"]),
                           help="Pull the image from its registry: if not in the store, always, never.")

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


POSITIONAL = dict(CONTEXT, allow_interspersed_args=False)


@cli.command(context_settings=POSITIONAL)
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


@cli.command(context_settings=POSITIONAL)
@run_options
def create(image, command, **flags):
    """Create a container from IMAGE without starting it; print its id."""
    from minirun.runtime import lifecycle
    warn_if_skipping(flags)
    click.echo(lifecycle.create(store(), image, make_options(command, flags)))


@cli.command()
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


@cli.command(context_settings=POSITIONAL)
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


@cli.command()
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


def table(rows):
    """Columns as wide as their widest cell, three spaces apart, as docker prints."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    click.echo("\n".join("   ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
                         for row in rows))


@cli.command()
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


@cli.command()
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


@cli.command()
@click.argument("containers", nargs=-1, required=True)
def wait(containers):
    """Block until containers exit; print their exit codes."""
    from minirun.runtime import lifecycle
    for c in containers:
        code = lifecycle.wait(store(), c)
        click.echo(code if code is not None else 0)


@cli.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal to send.")
@click.argument("containers", nargs=-1, required=True)
def kill(containers, sig):
    """Send a signal to containers' PID 1."""
    from minirun.runtime import lifecycle
    signum = lifecycle.parse_signal(sig)
    for c in containers:
        lifecycle.kill(store(), c, signum)
        click.echo(c)


@cli.command()
@click.option("-t", "--time", "timeout", default=10, show_default=True, help="Seconds before SIGKILL.")
@click.argument("containers", nargs=-1, required=True)
def stop(containers, timeout):
    """Stop containers: their stop signal, then SIGKILL after a timeout."""
    from minirun.runtime import lifecycle
    for c in containers:
        lifecycle.stop(store(), c, timeout)
        click.echo(c)


@cli.command()
@click.option("-t", "--time", "timeout", default=10, show_default=True, help="Seconds before SIGKILL.")
@click.argument("containers", nargs=-1, required=True)
def restart(containers, timeout):
    """Stop then start containers again (detached)."""
    from minirun.runtime import lifecycle
    s = store()
    for c in containers:
        cid = lifecycle.stop(s, c, timeout)
        lifecycle.start_detached(s, cid)
        click.echo(c)


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Kill running containers first.")
@click.argument("containers", nargs=-1, required=True)
def rm(containers, force):
    """Remove containers (their writable layer, cgroup and state)."""
    from minirun.runtime import lifecycle
    failed = None
    for c in containers:
        try:
            lifecycle.remove(store(), c, force)
            click.echo(c)
        except MinirunError as e:
            failed = e
            click.echo(f"minirun: {e}", err=True)
    if failed:
        sys.exit(failed.exit_code)


@cli.group()
def container():
    """Manage containers."""


@container.command("prune")
def container_prune():
    """Remove every stopped container."""
    from minirun.runtime import lifecycle
    for cid in lifecycle.prune(store()):
        click.echo(f"deleted {cid}")


@cli.command()
@click.argument("container")
def port(container):
    """The container's published ports."""
    from minirun.runtime import lifecycle
    for mapping in lifecycle.ports(store(), container):
        click.echo(str(mapping))


@cli.group()
def network():
    """Manage networks."""


@network.command("create")
@click.option("--subnet", help="CIDR, e.g. 10.201.7.0/24 (default: a free /24).")
@click.argument("name")
def network_create(name, subnet):
    """Create a bridge network."""
    from minirun.network.networks import Networks
    click.echo(Networks(store().root).create(name, subnet).id)


@network.command("ls")
def network_ls():
    """List networks."""
    from minirun.network.networks import Networks
    nets = Networks(store().root)
    nets.get("bridge")
    table([("NETWORK ID", "NAME", "DRIVER", "SUBNET", "BRIDGE")] +
          [(n.id[:12], n.name, "bridge", n.subnet, n.bridge) for n in nets.all()])


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
def network_rm(names):
    """Remove networks no container uses."""
    from minirun.network import connect
    for name in names:
        connect.remove_network(store().root, name)
        click.echo(name)


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
def network_inspect(names):
    """Show networks and their containers (JSON)."""
    import json
    from minirun.network import connect
    click.echo(json.dumps([connect.inspect(store().root, n) for n in names], indent=4))


@network.command("prune")
def network_prune():
    """Remove user networks no container uses, and unused bridges."""
    from minirun.network import connect
    for name in connect.prune(store().root):
        click.echo(f"deleted {name}")


@cli.command()
@click.argument("container")
def top(container):
    """The processes running in a container."""
    from minirun.runtime import lifecycle
    table([("PID", "UID", "TIME", "CMD")] + lifecycle.top(store(), container))


@cli.command()
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


@cli.command()
@click.option("-q", "--quiet", is_flag=True, help="Only image ids.")
def images(quiet):
    """List the images in the local store."""
    from minirun.image.embedded import ensure_embedded
    from minirun.image.listing import image_rows
    s = store()
    ensure_embedded(s, "busybox")
    rows = image_rows(s)
    if quiet:
        for row in rows:
            click.echo(row[2])
        return
    table([("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")] + rows)


@cli.command()
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]", help="Name the image.")
@click.option("-f", "--file", "dockerfile", help="The Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--build-arg", multiple=True, metavar="KEY=VAL", help="Set a build-time ARG.")
@click.option("--target", help="Build up to this stage.")
@click.option("--no-cache", is_flag=True, help="Run every step, ignoring the build cache.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image id.")
@click.option("--network", default="bridge", show_default=True,
              type=click.Choice(["bridge", "default", "host", "none"]),
              help="The network of RUN steps.")
@PULL_OPTION
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="The target platform (TARGETPLATFORM).")
@click.option("--secret", multiple=True, metavar="id=ID,src=FILE",
              help="A secret for RUN --mount=type=secret (src=FILE or env=VAR).")
@click.argument("context")     # (not click.Path: its gettext calls would cost every command)
def build(tags, dockerfile, build_arg, target, no_cache, quiet, network, pull, platform, secret,
          context):
    """Build an image from a Dockerfile and a CONTEXT directory."""
    from minirun.image.builder import BuildOptions, build as run_build
    from minirun.image.store import check_name
    args = {}
    for item in build_arg:
        key, eq, value = item.partition("=")
        args[key] = value if eq else os.environ.get(key, "")
    for tag in tags:
        check_name(tag)
    from minirun.image.runmounts import parse_secret_flag
    secrets = {}
    for text in secret:
        try:
            secret_id, value = parse_secret_flag(text)
        except ValueError as e:
            raise UsageError(str(e)) from None
        secrets[secret_id] = value
    image_id = run_build(store(), BuildOptions(context, dockerfile, list(tags), args, target,
                                               no_cache, quiet,
                                               "bridge" if network == "default" else network, pull,
                                               platform, secrets))
    if quiet:
        click.echo(image_id)


@cli.command()
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="From a multi-platform image, this one.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image's reference.")
@click.argument("name")
def pull(name, platform, quiet):
    """Pull an image from a registry: NAME[:TAG|@DIGEST]."""
    from minirun.image import distribution, reference
    distribution.pull(store(), name, platform=platform, quiet=quiet)
    click.echo(str(reference.parse(name)))


@cli.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only the manifest's digest.")
@click.argument("name")
def push(name, quiet):
    """Push an image to its registry: NAME[:TAG]."""
    from minirun.image import distribution
    digest = distribution.push(store(), name, quiet=quiet)
    if quiet:
        click.echo(digest)


@cli.command()
@click.option("-u", "--username", help="The user name.")
@click.option("-p", "--password", help="The password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.argument("server", required=False, default="docker.io")
def login(server, username, password, password_stdin):
    """Log in to a registry; the credentials go to Docker's config.json."""
    require_root()                      # before asking for a password, not after
    from minirun.image import credentials, distribution, reference
    domain = reference.registry_domain(server)
    if password_stdin:
        if password is not None:
            raise UsageError("--password and --password-stdin: give one")
        password = sys.stdin.read().rstrip("\r\n")
    if username is None:
        if not sys.stdin.isatty() or password_stdin:
            raise UsageError("give the user name with -u when stdin is not a terminal")
        username = click.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError("give the password with --password-stdin when stdin is not a terminal")
        password = click.prompt("Password", hide_input=True)
    reg = distribution.connect(store(), domain)
    reg.credentials = (username, password)
    reg.check_login()
    credentials.store(domain, username, password)
    click.echo("Login Succeeded")


@cli.command()
@click.argument("server", required=False, default="docker.io")
def logout(server):
    """Forget the credentials for a registry."""
    from minirun.image import credentials, reference
    domain = reference.registry_domain(server)
    if credentials.forget(domain):
        click.echo(f"Removing login credentials for {domain}")
    else:
        click.echo(f"Not logged in to {domain}")


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Even if a container uses it.")
@click.argument("images", nargs=-1, required=True)
def rmi(images, force):
    """Remove images (their names; the image once no name is left)."""
    from minirun.image import manage
    for ref in images:
        for line in manage.remove_image(store(), ref, force):
            click.echo(line)


@cli.command()
@click.argument("source")
@click.argument("target")
def tag(source, target):
    """Give the image SOURCE the name TARGET."""
    from minirun.image.store import check_name
    check_name(target)
    s = store_with([source])
    s.tag(target, s.resolve_id(source))


@cli.command()
@click.option("--no-trunc", is_flag=True, help="Show whole commands.")
@click.argument("image")
def history(image, no_trunc):
    """The steps that made an image, newest first."""
    from minirun.image import manage
    table([("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")] +
          manage.history(store_with([image]), image, truncate=not no_trunc))


@cli.command()
@click.option("-o", "--output", required=True, help="The archive to write.")
@click.option("--format", "fmt", type=click.Choice(["docker", "oci"]), default="docker",
              show_default=True, help="docker: as `docker save`; oci: an OCI image layout.")
@click.argument("images", nargs=-1, required=True)
def save(output, fmt, images):
    """Write images to a tar archive that docker load (or OCI tools) reads."""
    from minirun.image import archive
    archive.save(store_with(images), images, output, fmt)


@cli.command()
@click.option("-i", "--input", "path", required=True, help="A docker save or OCI layout tar.")
def load(path):
    """Load images from an archive (docker save or OCI layout)."""
    from minirun.image import archive
    for image_id, tags in archive.load(store(), path):
        for tag in tags:
            click.echo(f"Loaded image: {tag}")
        if not tags:
            click.echo(f"Loaded image ID: {image_id}")


@cli.command("import")
@click.argument("path")
@click.argument("name")
def import_(path, name):
    """Make a one-layer image NAME from a root filesystem tar."""
    from minirun.image import archive
    from minirun.image.store import check_name
    check_name(name)
    click.echo(archive.import_rootfs(store(), path, name))


@cli.group()
def image():
    """Manage images."""


@cli.command()
def repair():
    """Repair a damaged store: names, image configs, cache, links."""
    from minirun.image import manage
    for line in manage.repair(store()):
        click.echo(line)


@cli.group()
def builder():
    """The builder's own storage."""


@builder.command("prune")
def builder_prune():
    """Empty every RUN --mount=type=cache directory, the build cache and its checksums."""
    from minirun.image import manage, runmounts
    from minirun.image.listing import human_size
    s = store()
    freed = runmounts.prune(s.root)
    dropped = manage.drop_build_cache(s)
    click.echo(f"Deleted {dropped} build cache entries")
    click.echo(f"Total reclaimed space: {human_size(freed)}")


@image.command("prune")
@click.option("-a", "--all", "everything", is_flag=True, help="Also named images no container uses.")
def image_prune(everything):
    """Remove unnamed images, unused layers and stale build cache."""
    from minirun.image import manage
    for line in manage.prune(store(), everything):
        click.echo(line)


@cli.group()
def dockerfile():
    """Dockerfile tools."""


@dockerfile.command("parse")
@click.option("--format", "fmt", type=click.Choice(["text", "buildkit-json"]), default="text",
              show_default=True, help="buildkit-json: the conformance corpus's record shape.")
@click.argument("file")
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
    exit_now(run_command())


def run_command():
    """Run the command line; its exit status. Every failure a user can
    cause is one line here."""
    try:
        code = cli.main(prog_name="minirun", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except SystemExit as e:                 # a command's own status (run, exec...)
        return e.code
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help())
        return 0
    except click.UsageError as e:
        command = e.ctx.command_path.partition(" ")[2] if e.ctx else ""
        hint = f" (see 'minirun {command + ' ' if command else ''}--help')" if e.ctx else ""
        click.echo(f"minirun: {e.format_message()}{hint}", err=True)
        return 125
    except click.exceptions.Abort:
        return 130
    except MinirunError as e:
        click.echo(f"minirun: {e}", err=True)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        # Last resort for a path the user gave that a check above missed:
        # still one line, never a traceback.
        where = f"{e.filename}: " if e.filename else ""
        full = (f" (the store is {STORE_ROOT[0]}: free space there)"
                if e.errno == errno.ENOSPC and STORE_ROOT else "")
        click.echo(f"minirun: {where}{e.strerror or e}{full}", err=True)
        return 125
