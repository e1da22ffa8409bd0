"""Image references as Docker reads them: `alpine` is
docker.io/library/alpine:latest, `127.0.0.1:5000/a/b:1` names a registry by
host and port, `name@sha256:<hex>` pins the content.

    [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]

The first component is a registry only when it looks like a host: it has a
dot or a port, is `localhost`, or has capitals (which a path may not). The
grammar is distribution's reference package; a parser here never touches
the network, so a bad reference is refused before any request.
"""
import re
from dataclasses import dataclass

from minirun.errors import UsageError

DOCKER_HUB = "docker.io"
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN = rf"(?:{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
PATH_RE = re.compile(rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*")
DOMAIN_RE = re.compile(DOMAIN)
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    domain: str               # docker.io, 127.0.0.1:5000
    path: str                 # library/alpine
    tag: str | None = None    # None with a digest only
    digest: str | None = None

    @property
    def familiar(self):
        """How Docker shows the repository: `alpine`, `user/app`, `host:5000/app`."""
        if self.domain == DOCKER_HUB:
            return self.path.removeprefix("library/")
        return f"{self.domain}/{self.path}"

    @property
    def local_name(self):
        """The name the store keeps: `alpine:latest`, or `alpine@sha256:…`."""
        return f"{self.familiar}@{self.digest}" if self.digest else f"{self.familiar}:{self.tag}"

    @property
    def reference(self):
        """What a registry is asked for: the digest if pinned, else the tag."""
        return self.digest or self.tag

    def __str__(self):
        return f"{self.domain}/{self.path}" + (f":{self.tag}" if self.tag else "") + \
            (f"@{self.digest}" if self.digest else "")


def parse(text):
    """Docker's ParseNormalizedNamed: `text` → a Reference, or one UsageError line."""
    def bad(why):
        return UsageError(f"invalid reference format: {text!r}: {why}")

    if re.fullmatch(r"[0-9a-f]{64}", text):
        raise bad("a 64-hex string is an image id, not a repository name")
    name, at, digest = text.partition("@")
    if at and not DIGEST_RE.fullmatch(digest):
        raise bad("a digest is sha256: and 64 lower-case hex digits")
    tag = None
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not TAG_RE.fullmatch(tag):
            raise bad("a tag is [A-Za-z0-9_.-], at most 128 characters, not starting with . or -")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, path = first, rest
        if not DOMAIN_RE.fullmatch(domain):
            raise bad(f"{domain!r} is not a registry host[:port]")
    else:
        domain, path = DOCKER_HUB, name
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if path.lower() != path:
        raise bad("repository names must be lower-case")
    if not PATH_RE.fullmatch(path):
        raise bad("a repository name is lower-case components [a-z0-9] joined by . _ __ or -, "
                  "separated by single slashes")
    if len(domain) + 1 + len(path) > 255:
        raise bad("a repository name is at most 255 characters")
    return Reference(domain, path, tag if tag or at else "latest", digest or None)


def registry_domain(server):
    """`login`'s argument: a host[:port], maybe written as a URL."""
    domain = server.removeprefix("https://").removeprefix("http://").split("/")[0]
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DOCKER_HUB
    if not DOMAIN_RE.fullmatch(domain):
        raise UsageError(f"{server!r} is not a registry host[:port]")
    return domain
