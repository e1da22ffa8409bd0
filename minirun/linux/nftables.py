"""nft(8): minirun's netfilter rules, all in one table, `ip minirun`.

    chain prerouting    nat, hook prerouting: packets for a host address → ports
    chain output        nat, hook output: the host's own connections, 127.0.0.1
                        included, to a host address → ports
    chain ports         one DNAT rule per published port
    chain postrouting   nat, hook postrouting: each bridge's subnet leaving the
                        host is masqueraded; so are 127.0.0.1-sourced packets
                        DNATed into a bridge (the localhost case)

Every rule carries a comment naming its owner ("container <id>", "network
<bridge>"), so the owner's rules can be found and deleted again. The ruleset
is the host's, shared by every minirun: changes hold a host-wide lock.
"""
import fcntl
import json
import os
import subprocess
from contextlib import contextmanager

from minirun.errors import KernelError
from minirun.linux import explain

TABLE = "minirun"
LOCK = "/run/minirun-nftables.lock"
SKELETON = f"""\
add table ip {TABLE}
add chain ip {TABLE} ports
add chain ip {TABLE} prerouting {{ type nat hook prerouting priority dstnat; }}
add chain ip {TABLE} output {{ type nat hook output priority -100; }}
add chain ip {TABLE} postrouting {{ type nat hook postrouting priority srcnat; }}
add rule ip {TABLE} prerouting fib daddr type local jump ports
add rule ip {TABLE} output fib daddr type local jump ports
"""


def nft(script):
    """Apply a script of nft commands atomically: all or nothing."""
    explain.step("nft -f - <<< " + script.strip().replace("\n", "; "), "nft(8)")
    done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if done.returncode != 0:
        raise KernelError(f"nft: {done.stderr.strip().splitlines()[0] if done.stderr else 'failed'}")


def _rules():
    """[(chain, handle, comment)] of the table's rules; [] without a table."""
    done = subprocess.run(["nft", "-j", "-a", "list", "table", "ip", TABLE],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return [(r["rule"]["chain"], r["rule"]["handle"], r["rule"].get("comment", ""))
            for r in json.loads(done.stdout)["nftables"] if "rule" in r]


@contextmanager
def _locked():
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_rules(owner, rules, replace=False):
    """rules: [(chain, rule text)], each tagged with `owner`; the table is
    made first if need be. With replace, the owner's old rules go first."""
    with _locked():
        existing = _rules()
        script = SKELETON if existing is None else ""
        if replace and existing:
            script += "".join(f"delete rule ip {TABLE} {chain} handle {handle}\n"
                              for chain, handle, comment in existing if comment == owner)
        script += "".join(f'add rule ip {TABLE} {chain} {rule} comment "{owner}"\n'
                          for chain, rule in rules)
        nft(script)


def delete_rules(owner):
    """Delete every rule tagged with `owner`; drop the table once only the
    skeleton's own jumps are left."""
    with _locked():
        rules = _rules()
        if rules is None:
            return
        mine = [(chain, handle) for chain, handle, comment in rules if comment == owner]
        others = [r for r in rules if r[2] and r[2] != owner]
        if not others:
            nft(f"delete table ip {TABLE}\n")
        elif mine:
            nft("".join(f"delete rule ip {TABLE} {chain} handle {handle}\n"
                        for chain, handle in mine))
