"""The command line: parse flags, call the library, print. Nothing here
touches the kernel; every failure a user can cause prints one line.

The commands themselves are in minirun/commands/, a module per kind of
object, imported when one of its commands is run (LazyGroup)."""
import errno
import importlib

import click

from minirun.commands import CONTEXT, STORE_ROOT
from minirun.errors import MinirunError, exit_now

# command → "module:function" under minirun/commands/
COMMANDS = {
    "run": "run:run",
    "create": "run:create",
    "start": "containers:start",
    "exec": "containers:exec",
    "ps": "containers:ps",
    "inspect": "containers:inspect",
    "logs": "containers:logs",
    "wait": "containers:wait",
    "kill": "containers:kill",
    "stop": "containers:stop",
    "restart": "containers:restart",
    "rm": "containers:rm",
    "container": "containers:container",
    "port": "containers:port",
    "top": "containers:top",
    "stats": "containers:stats",
    "network": "networks:network",
    "images": "images:images",
    "build": "images:build",
    "pull": "images:pull",
    "push": "images:push",
    "login": "images:login",
    "logout": "images:logout",
    "rmi": "images:rmi",
    "tag": "images:tag",
    "history": "images:history",
    "save": "images:save",
    "load": "images:load",
    "import": "images:import_",
    "image": "images:image",
    "repair": "images:repair",
    "builder": "images:builder",
    "dockerfile": "images:dockerfile",
}


class LazyGroup(click.Group):
    """The root command, whose commands are looked up in COMMANDS and
    imported only when asked for (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, function = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"minirun.commands.{module}"), function)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.option("--root", envvar="MINIRUN_ROOT", default="/var/lib/minirun", show_default=True,
              help="Where images and containers are stored.")
@click.option("--explain", is_flag=True, help="Print each kernel step as it happens.")
def cli(root, explain):
    """minirun: containers from the kernel's own parts."""
    if explain:
        from minirun.linux import explain as trace
        trace.enable()


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
