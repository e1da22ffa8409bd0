"""The command line's pieces, one module per kind of object: run.py (run,
create), containers.py, images.py, networks.py. cli.py imports a module only
when one of its commands is run: building a click command builds every option
it has, and `minirun kill` need not build `run`'s forty. What the modules
share is here: the store a command works on, and the table printer.
"""
import os

import click

from minirun.errors import MinirunError

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


PULL_OPTION = click.option("--pull", default="missing", show_default=True,
                           type=click.Choice(["missing", "always", "never"]),
                           help="Pull the image from its registry: if not in the store, always, never.")


POSITIONAL = dict(CONTEXT, allow_interspersed_args=False)


def table(rows):
    """Columns as wide as their widest cell, three spaces apart, as docker prints."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    click.echo("\n".join("   ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
                         for row in rows))
