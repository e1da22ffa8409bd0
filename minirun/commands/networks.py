"""network create, ls, rm, inspect, prune."""

import click

from minirun.commands import store, table


@click.group()
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
