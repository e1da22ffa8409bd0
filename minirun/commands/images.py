"""Commands on images and the store: images, build, pull, push, login,
logout, rmi, tag, history, save, load, import, image prune, builder prune,
repair, dockerfile parse.
"""
import os
import sys

import click

from minirun.commands import PULL_OPTION, require_root, store, store_with, table
from minirun.errors import UsageError


@click.command()
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


@click.command()
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


@click.command()
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="From a multi-platform image, this one.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image's reference.")
@click.argument("name")
def pull(name, platform, quiet):
    """Pull an image from a registry: NAME[:TAG|@DIGEST]."""
    from minirun.image import distribution, reference
    distribution.pull(store(), name, platform=platform, quiet=quiet)
    click.echo(str(reference.parse(name)))


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only the manifest's digest.")
@click.argument("name")
def push(name, quiet):
    """Push an image to its registry: NAME[:TAG]."""
    from minirun.image import distribution
    digest = distribution.push(store(), name, quiet=quiet)
    if quiet:
        click.echo(digest)


@click.command()
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


@click.command()
@click.argument("server", required=False, default="docker.io")
def logout(server):
    """Forget the credentials for a registry."""
    from minirun.image import credentials, reference
    domain = reference.registry_domain(server)
    if credentials.forget(domain):
        click.echo(f"Removing login credentials for {domain}")
    else:
        click.echo(f"Not logged in to {domain}")


@click.command()
@click.option("-f", "--force", is_flag=True, help="Even if a container uses it.")
@click.argument("images", nargs=-1, required=True)
def rmi(images, force):
    """Remove images (their names; the image once no name is left)."""
    from minirun.image import manage
    s = store()
    for ref in images:
        for line in manage.remove_image(s, ref, force):
            click.echo(line)


@click.command()
@click.argument("source")
@click.argument("target")
def tag(source, target):
    """Give the image SOURCE the name TARGET."""
    from minirun.image.store import check_name
    check_name(target)
    s = store_with([source])
    s.tag(target, s.resolve_id(source))


@click.command()
@click.option("--no-trunc", is_flag=True, help="Show whole commands.")
@click.argument("image")
def history(image, no_trunc):
    """The steps that made an image, newest first."""
    from minirun.image import manage
    table([("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")] +
          manage.history(store_with([image]), image, truncate=not no_trunc))


@click.command()
@click.option("-o", "--output", required=True, help="The archive to write.")
@click.option("--format", "fmt", type=click.Choice(["docker", "oci"]), default="docker",
              show_default=True, help="docker: as `docker save`; oci: an OCI image layout.")
@click.argument("images", nargs=-1, required=True)
def save(output, fmt, images):
    """Write images to a tar archive that docker load (or OCI tools) reads."""
    from minirun.image import archive
    archive.save(store_with(images), images, output, fmt)


@click.command()
@click.option("-i", "--input", "path", required=True, help="A docker save or OCI layout tar.")
def load(path):
    """Load images from an archive (docker save or OCI layout)."""
    from minirun.image import archive
    for image_id, tags in archive.load(store(), path):
        for tag in tags:
            click.echo(f"Loaded image: {tag}")
        if not tags:
            click.echo(f"Loaded image ID: {image_id}")


@click.command("import")
@click.argument("path")
@click.argument("name")
def import_(path, name):
    """Make a one-layer image NAME from a root filesystem tar."""
    from minirun.image import archive
    from minirun.image.store import check_name
    check_name(name)
    click.echo(archive.import_rootfs(store(), path, name))


@click.group()
def image():
    """Manage images."""


@image.command("prune")
@click.option("-a", "--all", "everything", is_flag=True, help="Also named images no container uses.")
def image_prune(everything):
    """Remove unnamed images, unused layers and stale build cache."""
    from minirun.image import manage
    for line in manage.prune(store(), everything):
        click.echo(line)


@click.command()
def repair():
    """Repair a damaged store: names, image configs, cache, links."""
    from minirun.image import manage
    for line in manage.repair(store()):
        click.echo(line)


@click.group()
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


@click.group()
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
