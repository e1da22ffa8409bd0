"""Networking on the real kernel: bridges, veths, addresses, NAT and published
ports, checked with real packets between containers and from the host. Every
address used belongs to loopback, to the host, or to a container the test made."""
import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import needs_root

pytestmark = needs_root


def nft_rules():
    done = subprocess.run(["nft", "-j", "list", "table", "ip", "minirun"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return []
    return [r["rule"] for r in json.loads(done.stdout)["nftables"] if "rule" in r]


def leases(root):
    found = []
    d = os.path.join(root, "networks")
    for entry in os.listdir(d) if os.path.isdir(d) else []:
        if entry.endswith(".leases"):
            found += os.listdir(os.path.join(d, entry))
    return found


def address_of(minirun, name):
    doc = json.loads(minirun("inspect", name, check=0).stdout)[0]
    return doc["NetworkSettings"]["IPAddress"]


def wait_for_port(host, port, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_bridge_gives_eth0_an_address_a_route_and_its_name_in_hosts(minirun):
    out = minirun.sh("ip -4 -o addr show eth0; ip route; cat /etc/hosts; hostname",
                     "--hostname", "boxy")
    assert "inet 10.200." in out
    assert "default via 10.200.0.1 dev eth0" in out
    address = out.split("inet ")[1].split("/")[0]
    assert f"{address}\tboxy" in out


def test_two_containers_ping_each_other_and_talk_tcp(minirun):
    minirun("run", "-d", "--name", "listener", "busybox", "sh", "-c",
            "echo hello-over-tcp | nc -l -p 7000", check=0)
    try:
        ip = address_of(minirun, "listener")
        out = minirun.sh(f"ping -c1 -W2 {ip} >/dev/null && echo PING-OK; "
                         f"for i in 1 2 3 4 5 6 7 8 9 10; do nc {ip} 7000 && break; sleep 0.1; done")
        assert "PING-OK" in out
        assert "hello-over-tcp" in out
    finally:
        minirun("rm", "-f", "listener")


def test_published_port_answers_on_localhost_and_the_hosts_address(minirun, tmp_path):
    (tmp_path / "index.html").write_text("served-from-a-container\n")
    minirun("run", "-d", "--name", "web", "-p", "18080:80", "-v", f"{tmp_path}:/www:ro",
            "busybox", "httpd", "-f", "-p", "80", "-h", "/www", check=0)
    try:
        assert minirun("port", "web", check=0).stdout == "80/tcp -> 0.0.0.0:18080\n"
        wait_for_port("127.0.0.1", 18080)
        for host in ("127.0.0.1", host_address()):
            with urllib.request.urlopen(f"http://{host}:18080/", timeout=5) as r:
                assert r.read() == b"served-from-a-container\n"
        # the same port again: refused, and nothing created
        before = minirun("ps", "-aq", check=0).stdout
        again = minirun("run", "--rm", "-p", "18080:80", "busybox", "true")
        assert again.returncode == 125
        assert again.stderr.count("\n") == 1 and "already published" in again.stderr
        assert minirun("ps", "-aq", check=0).stdout == before
    finally:
        minirun("rm", "-f", "web")
    assert not [r for r in nft_rules() if r.get("comment", "").startswith("container")]


def host_address():
    """The host's own non-loopback IPv4 address (from its routes, no traffic)."""
    for line in subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True,
                               text=True).stdout.splitlines():
        words = line.split()
        if words[1] not in ("lo", "minirun0") and not words[1].startswith("mr-"):
            return words[3].split("/")[0]
    pytest.skip("the host has no address besides loopback")


def test_host_network_sees_the_hosts_interfaces(minirun):
    out = minirun.sh("ls /sys/class/net", "--network", "host")
    assert set(out.split()) == set(os.listdir("/sys/class/net"))


def test_container_network_mode_shares_the_other_namespace(minirun):
    minirun("run", "-d", "--name", "netowner", "busybox", "sleep", "30", check=0)
    try:
        ip = address_of(minirun, "netowner")
        out = minirun.sh("ip -4 -o addr show eth0", "--network", "container:netowner")
        assert f"inet {ip}/" in out
    finally:
        minirun("rm", "-f", "netowner")


def test_user_network_resolves_names_through_etc_hosts(minirun):
    minirun("network", "create", "testnet", "--subnet", "10.201.77.0/24", check=0)
    try:
        minirun("run", "-d", "--name", "alpha", "--network", "testnet", "busybox", "sleep", "30",
                check=0)
        out = minirun.sh("cat /etc/hosts; ping -c1 -W2 alpha >/dev/null && echo PING-OK",
                         "--network", "testnet", "--name", "beta")
        assert "10.201.77.2\talpha" in out
        assert "PING-OK" in out
        doc = json.loads(minirun("network", "inspect", "testnet", check=0).stdout)[0]
        assert doc["IPAM"]["Config"][0]["Subnet"] == "10.201.77.0/24"
        assert [c["Name"] for c in doc["Containers"].values()] == ["alpha"]
        # beta is gone: alpha's /etc/hosts, rewritten in place, no longer lists it
        assert "beta" not in minirun("exec", "alpha", "cat", "/etc/hosts", check=0).stdout
        refused = minirun("network", "rm", "testnet")
        assert refused.returncode == 125 and "in use" in refused.stderr
    finally:
        minirun("rm", "-f", "alpha")
        minirun("network", "rm", "testnet")
    assert "testnet" not in minirun("network", "ls", check=0).stdout


def test_dns_add_host_and_resolv_conf(minirun):
    out = minirun.sh("cat /etc/resolv.conf /etc/hosts", "--dns", "192.0.2.53",
                     "--add-host", "db.example:192.0.2.10", "--add-host", "gw:host-gateway")
    assert "nameserver 192.0.2.53" in out
    assert "db.example" in out and "192.0.2.10\tdb.example" in out
    assert "10.200.0.1\tgw" in out
    assert "nameserver 127." not in out


def test_twenty_concurrent_containers_get_distinct_addresses_and_leave_nothing(minirun, tmp_path):
    # Each waits until all twenty are up (a file each on a shared volume), so
    # their leases overlap however slowly the machine starts them.
    wait_for_all = ("ip -4 -o addr show eth0; touch /sync/$HOSTNAME; i=0; "
                    "while [ $(ls /sync | wc -l) -lt 20 ] && [ $i -lt 600 ]; do sleep 0.1; "
                    "i=$((i+1)); done")
    procs = [minirun.popen("run", "--rm", "-v", f"{tmp_path}:/sync", "busybox", "sh", "-c",
                           wait_for_all, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len(os.listdir(tmp_path)) == 20
    addresses = [o[0].split("inet ")[1].split("/")[0] for o in outs]
    assert len(set(addresses)) == 20
    assert leases(minirun.root) == []
    assert not any(d.startswith("veth") for d in os.listdir("/sys/class/net"))
    assert "minirun0" not in os.listdir("/sys/class/net")
    assert nft_rules() == []


@pytest.mark.parametrize("args, message", [
    (["--network", "nosuchnet"], "network nosuchnet not found"),
    (["-p", "80"], "-p 80: expected"),
    (["-p", "1:2:3:4"], "-p 1:2:3:4: expected"),
    (["-p", "18081:80/sctp"], "-p 18081:80/sctp: expected"),
    (["--network", "none", "-p", "18081:80"], "-p needs a bridge network"),
    (["--dns", "not-an-ip"], "--dns not-an-ip: not an IP address"),
    (["--add-host", "nocolon"], "--add-host nocolon: expected NAME:IP"),
])
def test_bad_network_input_is_one_line_and_changes_nothing(minirun, args, message):
    before = minirun("ps", "-aq", check=0).stdout
    done = minirun("run", "--rm", *args, "busybox", "true")
    assert done.returncode == 125
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert minirun("ps", "-aq", check=0).stdout == before
    assert leases(minirun.root) == []


def test_overlapping_subnet_is_refused(minirun):
    minirun("network", "create", "first", "--subnet", "10.201.90.0/24", check=0)
    try:
        done = minirun("network", "create", "second", "--subnet", "10.201.90.128/25")
        assert done.returncode == 125
        assert "overlaps 10.201.90.0/24 of first" in done.stderr
        assert "second" not in minirun("network", "ls", check=0).stdout
    finally:
        minirun("network", "rm", "first", check=0)


@pytest.mark.parametrize("network", ["bridge", "none"])
def test_a_mount_failing_in_the_child_is_the_error_reported(minirun, network):
    # The child mounts while the parent wires its network: when the child
    # dies first, its reason must win over the parent's wiring that followed.
    for _ in range(3):
        done = minirun("run", "--rm", "--network", network, "--tmpfs", "/x:size=bogus",
                       "busybox", "true")
        assert done.returncode == 125
        assert done.stderr.count("\n") == 1 and '"size=bogus"): EINVAL' in done.stderr, done.stderr
    assert minirun("ps", "-aq", check=0).stdout == ""
    assert leases(minirun.root) == []
    assert nft_rules() == []
