"""The three /etc files a container gets from its bundle, bind-mounted over
the image's: /etc/hostname, /etc/hosts and /etc/resolv.conf — what Docker
writes too, so that a name, its peers and a resolver are right whatever the
image ships. The network code rewrites /etc/hosts as peers come and go.
"""
import os

ETC_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def etc_file_paths(bundle):
    """{path in the container: the file in the bundle bind-mounted there}."""
    return {target: os.path.join(bundle, os.path.basename(target)) for target in ETC_FILES}


def write_etc_files(bundle, hostname, host_lines=(), dns=(), keep_loopback_dns=False):
    """Write /etc/hostname, /etc/hosts and /etc/resolv.conf for the container."""
    files = etc_file_paths(bundle)
    with open(files["/etc/hostname"], "w") as f:
        f.write(hostname + "\n")
    with open(files["/etc/resolv.conf"], "w") as f:
        f.write(resolv_conf(dns, keep_loopback_dns))
    write_hosts(bundle, host_lines)


def write_hosts(bundle, lines):
    """/etc/hosts, rewritten in place: it is bind-mounted into a running
    container, and a new file (rename) would not reach it there."""
    try:
        with open(os.path.join(bundle, "hosts"), "w") as f:
            f.write("\n".join(["127.0.0.1\tlocalhost",
                               "::1\tlocalhost ip6-localhost ip6-loopback", *lines]) + "\n")
    except FileNotFoundError:      # the bundle is not there (yet, or any more)
        pass


def host_hosts_lines():
    """The host's /etc/hosts, for a container on the host's network."""
    try:
        with open("/etc/hosts") as f:
            return [line for line in f.read().splitlines() if line.strip()]
    except OSError:
        return []


def resolv_conf(dns=(), keep_loopback=False):
    """The host's resolv.conf minus loopback resolvers, which would mean the
    container's own loopback, where nothing listens (Docker does the same;
    with the host's network they stay); --dns servers replace the host's."""
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    def nameserver(line):
        words = line.split()
        return words[1] if len(words) > 1 and words[0] == "nameserver" else None
    keep = [line for line in lines if nameserver(line) is None
            or not (dns or not keep_loopback and (nameserver(line).startswith("127.")
                                                   or nameserver(line) == "::1"))]
    return "\n".join(keep + [f"nameserver {ip}" for ip in dns]) + "\n"
