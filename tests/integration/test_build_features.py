"""What current Dockerfiles use, built for real: platform ARGs, RUN --mount
of every type (and secrets kept out of every layer), ADD of a URL from a
server on loopback with its checksum, COPY --parents/--exclude/--link, and
the build's directives and warnings."""
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading

import pytest

from tests.conftest import needs_root, write_tree

pytestmark = needs_root


def context(tmp_path, files):
    return write_tree(tmp_path / "ctx", files)


def build(m, ctx, *flags, check=0):
    done = m("build", "--network", "none", *flags, ctx)
    assert check is None or done.returncode == check, done.stderr
    return done


def out(m, image, *cmd):
    return m("run", "--rm", "--network", "none", image, *cmd, check=0).stdout


def test_platform_args_with_buildkits_scoping(m, tmp_path):
    from minirun.image.distribution import parse_platform, platform_text
    here = parse_platform(None)
    ctx = context(tmp_path, {"Dockerfile": (
        "FROM --platform=$BUILDPLATFORM busybox AS build\n"
        "ARG TARGETPLATFORM\nARG TARGETARCH\n"
        "ARG SHORT=${TARGETPLATFORM#*/}\n"
        'RUN echo "$TARGETPLATFORM $TARGETARCH $SHORT [$TARGETOS] [$BUILDPLATFORM]" > /out\n'
        "FROM busybox\nCOPY --from=build /out /out\n")})
    build(m, ctx, "-t", "plat", "--platform", platform_text(here))
    # TARGETOS and BUILDPLATFORM were not declared in the stage: empty there
    assert out(m, "plat", "cat", "/out") == f"{platform_text(here)} {here[1]} {here[1]} [] []\n"


def layer_bytes(m, tmp_path, image):
    """Every byte of every layer of `image`, as `save` writes them, and its config."""
    archive = tmp_path / "saved.tar"
    m("save", "-o", str(archive), image, check=0)
    blobs = []
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))[0]
        config = t.extractfile(manifest["Config"]).read()
        for name in manifest["Layers"]:
            with tarfile.open(fileobj=io.BytesIO(t.extractfile(name).read())) as layer:
                for member in layer:
                    blobs.append(member.name.encode())
                    if member.isfile():
                        blobs.append(layer.extractfile(member).read())
    return b"\n".join(blobs), config


def test_every_run_mount_type(m, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value-4242\n")
    ctx = context(tmp_path, {"src/a.txt": "from the context\n", "Dockerfile": (
        "FROM busybox\n"
        "RUN --mount=type=bind,source=src,target=/mnt/src "
        "cat /mnt/src/a.txt > /bound && ! touch /mnt/src/x 2>/dev/null\n"
        "RUN --mount=type=bind,source=src,target=/mnt/rw,rw touch /mnt/rw/x && test -e /mnt/rw/x\n"
        "ARG CACHE=/cache\n"
        "RUN --mount=type=cache,target=$CACHE,sharing=locked "
        "sh -c 'echo run >> /cache/runs; wc -l < /cache/runs > /runs'\n"
        "RUN --mount=type=tmpfs,target=/scratch grep -q ' /scratch tmpfs' /proc/mounts && "
        "touch /scratch/gone\n"
        "RUN --mount=type=secret,id=token,required=true "
        "sh -c 'wc -c < /run/secrets/token > /secret-size; stat -c %a /run/secrets/token > /secret-mode'\n"
        "RUN --mount=type=secret,id=absent true\n"
        "RUN --network=none sh -c 'ip -o link | wc -l > /links'\n")})
    build(m, ctx, "-t", "mounts", "--secret", f"id=token,src={secret}")
    assert out(m, "mounts", "cat", "/bound", "/runs", "/secret-size", "/secret-mode", "/links") == \
        "from the context\n1\n18\n400\n1\n"
    listing = out(m, "mounts", "sh", "-c", "ls -d /mnt /run /scratch /cache 2>&1; true")
    assert listing.count("No such file") == 4           # mount points do not reach the layer
    data, config = layer_bytes(m, tmp_path, "mounts")
    assert b"s3cr3t-value-4242" not in data and b"s3cr3t" not in config
    # the cache directory outlives the build; builder prune empties it
    build(m, ctx, "-t", "mounts", "--no-cache", "--secret", f"id=token,src={secret}")
    assert out(m, "mounts", "cat", "/runs") == "2\n"
    assert "Total reclaimed space" in m("builder", "prune", check=0).stdout
    build(m, ctx, "-t", "mounts", "--no-cache", "--secret", f"id=token,src={secret}")
    assert out(m, "mounts", "cat", "/runs") == "1\n"


def test_a_bind_mounts_content_is_part_of_the_cache_key(m, tmp_path):
    ctx = context(tmp_path, {"src/a.txt": "one\n", "Dockerfile": (
        "FROM busybox\nRUN --mount=type=bind,source=src,target=/s cat /s/a.txt > /seen\n")})
    build(m, ctx, "-t", "bound")
    assert "Using cache" in build(m, ctx, "-t", "bound").stdout
    (tmp_path / "ctx" / "src" / "a.txt").write_text("two\n")
    assert "Using cache" not in build(m, ctx, "-t", "bound").stdout
    assert out(m, "bound", "cat", "/seen") == "two\n"


@pytest.fixture
def web(tmp_path):
    """A file server on loopback."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def store_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files if "/seccomp" not in d)


def test_add_a_url_with_a_good_and_a_bad_checksum(m, tmp_path, web):
    root, url = web
    (root / "tool.txt").write_text("fetched over http\n")
    good = "sha256:" + hashlib.sha256(b"fetched over http\n").hexdigest()
    ctx = context(tmp_path, {"Dockerfile": f"FROM busybox\nADD --checksum={good} {url}/tool.txt /opt/\n"
                                           f"ADD {url}/tool.txt /plain\n"})
    build(m, ctx, "-t", "fetched")
    assert out(m, "fetched", "sh", "-c", "cat /opt/tool.txt; stat -c %a /plain") == \
        "fetched over http\n600\n"
    bad = "sha256:" + "0" * 64
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM busybox\nADD --checksum={bad} {url}/tool.txt /t\n")
    before = store_files(m.root)
    failed = build(m, ctx, "-t", "badsum", check=1)
    assert failed.stderr.count("\n") == 1 and "Dockerfile:2: ADD" in failed.stderr and \
        f"checksum mismatch: the file is {good}" in failed.stderr
    assert store_files(m.root) == before


def test_copy_parents_exclude_and_link(m, tmp_path):
    ctx = context(tmp_path, {"a/b/one.txt": "1", "a/b/two.log": "2", "a/keep.txt": "k",
                             "src/pkg/mod.py": "p", "Dockerfile": (
                                 "FROM busybox\n"
                                 "COPY --parents a/b/one.txt src/./pkg/mod.py /par/\n"
                                 "COPY --exclude=keep.txt --exclude=b/*.log a /ex/\n"
                                 "COPY --link a/keep.txt /linked\n")})
    build(m, ctx, "-t", "copies")
    assert out(m, "copies", "find", "/par", "/ex", "/linked", "-type", "f").split() == \
        ["/par/a/b/one.txt", "/par/pkg/mod.py", "/ex/b/one.txt", "/linked"]


def test_directives_and_warnings_are_said_once(m, tmp_path):
    ctx = context(tmp_path, {"Dockerfile": (
        "# syntax=example.com/frontend:2\n"
        "FROM ${BASE:-busybox} AS Build\nENV A 1\nCMD echo hi\n")})
    done = build(m, ctx, "-t", "linted")
    assert done.stderr.count("does not run frontend images") == 1
    for rule in ("StageNameCasing: Stage name 'Build' should be lowercase (line 2)",
                 "UndefinedArgInFrom: FROM argument 'BASE' is not declared (line 2)",
                 'LegacyKeyValueFormat: "ENV key=value" should be used instead of legacy',
                 "JSONArgsRecommended: JSON arguments recommended for CMD"):
        assert done.stderr.count(rule) == 1, done.stderr
    assert "4 warnings found" in done.stderr
    (tmp_path / "ctx" / "Dockerfile").write_text(
        "# syntax=docker/dockerfile:1\n# check=skip=JSONArgsRecommended,LegacyKeyValueFormat\n"
        "FROM busybox\nENV A 1\nCMD echo hi\n")
    quiet = build(m, ctx, "-t", "linted")
    assert quiet.stderr == ""
    (tmp_path / "ctx" / "Dockerfile").write_text("# check=error=true\nFROM busybox\nCMD echo hi\n")
    failed = build(m, ctx, "-t", "strict", check=1)
    assert "# check=error=true" in failed.stderr
    assert "strict" not in m("images", check=0).stdout
