"""The pure rules under build and networking: .dockerignore matching as
Docker's patternmatcher does it, and -p parsing. No root needed."""
import pytest

from minirun.errors import UsageError
from minirun.image.context import Ignore
from minirun.network.networks import parse_port


@pytest.mark.parametrize("patterns, path, excluded", [
    (["*.log"], "a.log", True),
    (["*.log"], "sub/a.log", False),                 # * stays within one element
    (["**/*.log"], "sub/deep/a.log", True),
    (["**/*.log"], "a.log", True),                   # **/ matches zero directories too
    (["*.log", "!keep.log"], "keep.log", False),     # the last match wins
    (["!keep.log", "*.log"], "keep.log", True),
    (["secret"], "secret/key", True),                # a directory's contents go with it
    (["/build"], "build/out", True),                 # a leading slash is the context's root
    (["a/**/z"], "a/b/c/z", True),
    (["a/**/z"], "a/z", True),
    (["file?.txt"], "file1.txt", True),
    (["file?.txt"], "file10.txt", False),
    (["[a-c].txt"], "b.txt", True),
    (["[!a-c].txt"], "b.txt", False),
    (["# a comment", ""], "# a comment", False),
    (["./docs/../docs/*.md"], "docs/x.md", True),    # patterns are cleaned first
])
def test_dockerignore_rules(patterns, path, excluded):
    assert Ignore(patterns).excluded(path) is excluded


@pytest.mark.parametrize("text, expected", [
    ("8080:80", ("0.0.0.0", 8080, 80, "tcp")),
    ("127.0.0.1:8080:80", ("127.0.0.1", 8080, 80, "tcp")),
    ("53:53/udp", ("0.0.0.0", 53, 53, "udp")),
])
def test_publish_forms(text, expected):
    p = parse_port(text)
    assert (p.host_ip, p.host_port, p.container_port, p.proto) == expected


@pytest.mark.parametrize("text", ["80", "0:80", "70000:80", "a:b", "1.2.3:80:80", "80:80/sctp",
                                  "localhost:80:80"])
def test_malformed_publish_is_refused(text):
    with pytest.raises(UsageError, match="expected"):
        parse_port(text)
