"""pull, push, login against real registries (tests/registries.py: Debian's
docker-registry, a token service signing real JWTs, TLS with a test CA),
and images written by skopeo, not by minirun."""
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

from tests.conftest import needs_root
from tests import registries

pytestmark = [needs_root, pytest.mark.skipif(shutil.which("docker-registry") is None,
                                             reason="needs Debian's docker-registry")]


@pytest.fixture
def registry(tmp_path):
    r = registries.Registry(str(tmp_path / "registry"))
    yield r
    r.stop()


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    d = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    return d


def top_diff_id(registry, repo, tag):
    """The last layer's diff_id, from the config blob as the registry stores it."""
    manifest, _ = registries.manifest_of(registry.domain, repo, tag)
    with open(registry.blob_path(manifest["config"]["digest"])) as f:
        return json.load(f)["rootfs"]["diff_ids"][-1].split(":")[1]


def layer_dirs(m):
    return set(os.listdir(os.path.join(m.root, "layers")))


def build(m, tmp_path, name, dockerfile):
    ctx = tmp_path / f"ctx-{name.replace('/', '_').replace(':', '_')}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    m("build", "-q", "--network", "none", "-t", name, str(ctx), check=0)


def test_push_then_run_pulls_it_back(m, registry, tmp_path):
    name = f"{registry.domain}/tour/hello:1"
    build(m, tmp_path, name, "FROM busybox\nRUN echo made by a RUN > /note\nCMD [\"cat\", \"/note\"]\n")
    image_id = m("inspect", "-f", "{{.Id}}", name, check=0).stdout.strip()
    out = m("push", name, check=0).stdout
    assert out.count("Pushed") == 2 and ": digest: sha256:" in out
    m("rmi", name, check=0)
    m("image", "prune", "-a", check=0)
    run = m("run", "--rm", "--network", "none", name, check=0)
    assert run.stdout == "made by a RUN\n"
    assert f"Unable to find image '{name}' locally" in run.stderr
    assert m("inspect", "-f", "{{.Id}}", name, check=0).stdout.strip() == image_id
    assert not os.listdir(os.path.join(m.root, "downloads")) and not os.listdir(os.path.join(m.root, "tmp"))


def test_push_then_pull_by_digest_gives_the_same_digest_and_image(m, registry, tmp_path):
    name = f"{registry.domain}/app:v1"
    build(m, tmp_path, name, "FROM busybox\nRUN echo one > /one\n")
    image_id = m("inspect", "-f", "{{.Id}}", name, check=0).stdout.strip()
    digest = m("push", "-q", name, check=0).stdout.strip()
    manifest, served = registries.manifest_of(registry.domain, "app", "v1")
    assert served == digest
    again = m("push", name, check=0).stdout
    assert again.count("Layer already exists") == 2          # HEAD, not a second upload
    m("rmi", name, check=0)
    out = m("pull", f"{registry.domain}/app@{digest}", check=0).stdout
    assert f"Digest: {digest}" in out
    pulled = m("inspect", "-f", "{{.Id}}", f"{registry.domain}/app@{digest}", check=0).stdout.strip()
    assert pulled == image_id
    # pushed to a second repository of the same registry: mounted, not uploaded
    m("tag", image_id.split(":")[1][:12], f"{registry.domain}/copy:v1", check=0)
    assert m("push", f"{registry.domain}/copy:v1", check=0).stdout.count("Mounted from app") == 2


def test_bad_references_are_refused_before_any_request(m):
    for bad in ("UPPER", "a//b", "x@sha256:abc", "x@md5:" + "0" * 32, "127.0.0.1:1/a//b",
                "a" * 64, "x:-tag"):
        out = m("pull", bad, check=125)
        assert out.stderr.startswith("minirun: invalid reference format") and \
            out.stderr.count("\n") == 1, (bad, out.stderr)
        assert "cannot reach" not in out.stderr


def test_a_corrupted_blob_in_the_registry_is_caught_and_nothing_is_stored(m, registry, tmp_path):
    name = f"{registry.domain}/bad:1"
    build(m, tmp_path, name, "FROM busybox\nRUN head -c 100000 /dev/urandom > /data\n")
    m("push", name, check=0)
    manifest, _ = registries.manifest_of(registry.domain, "bad", "1")
    top = manifest["layers"][-1]["digest"]
    with open(registry.blob_path(top), "r+b") as f:     # flip one byte of the stored blob
        f.seek(500)
        byte = f.read(1)
        f.seek(500)
        f.write(bytes([byte[0] ^ 0xFF]))
    m("rmi", name, check=0)
    m("image", "prune", "-a", check=0)
    out = m("pull", name, check=125)
    assert "does not match its digest" in out.stderr and out.stderr.count("\n") == 1
    assert top_diff_id(registry, "bad", "1") not in layer_dirs(m)    # good layers may stay
    assert top.split(":")[1] not in str(os.listdir(os.path.join(m.root, "downloads")))
    assert name not in m("images", check=0).stdout
    assert not os.listdir(os.path.join(m.root, "tmp"))


def size_of(path):
    """0 for a file gone meanwhile: a small layer's .partial is renamed when whole."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def test_an_interrupted_pull_leaves_no_image_and_resumes(m, registry, tmp_path):
    name = f"{registry.domain}/big:1"
    build(m, tmp_path, name, "FROM busybox\nRUN head -c 6000000 /dev/urandom > /big\n")
    m("push", name, check=0)
    m("rmi", name, check=0)
    m("image", "prune", "-a", check=0)
    slow = registries.SlowProxy(registry.port, rate=1_500_000)
    try:
        via_proxy = f"{slow.domain}/big:1"
        p = m.popen("pull", via_proxy, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        downloads = os.path.join(m.root, "downloads")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(size_of(os.path.join(downloads, f)) > 500_000
                   for f in (os.listdir(downloads) if os.path.isdir(downloads) else [])
                   if f.endswith(".partial")):
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)                          # ^C
        assert p.wait(20) == 130
    finally:
        slow.stop()
    assert top_diff_id(registry, "big", "1") not in layer_dirs(m)
    assert "big" not in m("images", check=0).stdout
    assert not os.listdir(os.path.join(m.root, "tmp"))
    out = m("pull", name, check=0).stdout
    assert "Resuming at" in out
    assert m("run", "--rm", "--network", "none", name, "wc", "-c", "/big", check=0).stdout.split()[0] == "6000000"


def test_damaged_pull_records_and_a_killed_pulls_leftovers_are_mended_from_the_cli(
        m, registry, tmp_path):
    name = f"{registry.domain}/mend:1"
    build(m, tmp_path, name, "FROM busybox\nRUN echo mended > /m\n")
    m("push", name, check=0)
    m("rmi", name, check=0)
    m("image", "prune", "-a", check=0)
    by_blob = os.path.join(m.root, "distribution", "by-blob")
    for entry in os.listdir(by_blob):                   # every record says nonsense
        with open(os.path.join(by_blob, entry), "w") as f:
            f.write("not a digest")
    downloads = os.path.join(m.root, "downloads")
    os.makedirs(downloads, exist_ok=True)
    for leftover in ("a" * 64, "b" * 64 + ".partial"):  # what a SIGKILLed pull leaves
        with open(os.path.join(downloads, leftover), "w") as f:
            f.write("x")
    assert m("run", "--rm", "--network", "none", name, "cat", "/m", check=0).stdout == "mended\n"
    m("image", "prune", check=0)
    assert os.listdir(downloads) == []


def test_concurrent_pulls_of_images_sharing_layers_store_each_once(m, registry, tmp_path):
    base = "FROM busybox\nRUN head -c 3000000 /dev/urandom > /shared\n"
    build(m, tmp_path, f"{registry.domain}/one:1", base + "RUN echo one > /who\n")
    build(m, tmp_path, f"{registry.domain}/two:1", base + "RUN echo two > /who\n")
    for n in ("one", "two"):
        m("push", f"{registry.domain}/{n}:1", check=0)
        m("rmi", f"{registry.domain}/{n}:1", check=0)
    m("image", "prune", "-a", check=0)
    assert layer_dirs(m) == set()
    procs = [m.popen("pull", f"{registry.domain}/{n}:1", stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE) for n in ("one", "two")]
    assert [p.wait(60) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    assert len(layer_dirs(m)) == 4                 # busybox, /shared, and each /who
    for n in ("one", "two"):
        assert m("run", "--rm", "--network", "none", f"{registry.domain}/{n}:1", "cat", "/who",
                 check=0).stdout == f"{n}\n"


# --- images other tools wrote --------------------------------------------------------------

def oci_layout(tmp_path, m):
    """An OCI layout written here, not by minirun: an index of two
    platforms (linux/amd64, linux/arm64/v8), each busybox's layer plus a
    file naming the platform."""
    save = tmp_path / "busybox.tar"
    m("save", "--format", "oci", "-o", str(save), "busybox", check=0)
    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    with tarfile.open(save) as t:
        index = json.load(t.extractfile("index.json"))
        bb = json.load(t.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        base = t.extractfile("blobs/sha256/" + bb["layers"][0]["digest"].split(":")[1]).read()
    base_desc = blob(base)
    manifests = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = f"{arch}\n".encode()
            info = tarfile.TarInfo("platform")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        top = buf.getvalue()
        config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["cat", "/platform"]},
                  "rootfs": {"type": "layers", "diff_ids": [base_desc["digest"],
                                                           "sha256:" + hashlib.sha256(top).hexdigest()]}}
        if variant:
            config["variant"] = variant
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               **blob(json.dumps(config).encode())},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **base_desc},
                               {"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(top)}]}
        platform = {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          **blob(json.dumps(manifest).encode()), "platform": platform})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": manifests}
    top_index = blob(json.dumps(index).encode())
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                                           **top_index, "annotations": {
                                               "org.opencontainers.image.ref.name": "multi"}}]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return layout


def skopeo(*args):
    done = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs Debian's skopeo")
def test_a_multi_platform_index_from_skopeo_gives_this_machines_image(m, registry, tmp_path):
    layout = oci_layout(tmp_path, m)
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi",
           f"docker://{registry.domain}/multi:1")
    index, _ = registries.manifest_of(registry.domain, "multi", "1")
    assert len(index["manifests"]) == 2                   # the registry holds an index
    name = f"{registry.domain}/multi:1"
    assert m("run", "--rm", "--network", "none", name, check=0).stdout == "amd64\n"
    m("pull", "--platform", "linux/arm64", name, check=0)
    assert m("inspect", "-f", "{{.architecture}}", name, check=0).stdout == "arm64\n"
    out = m("pull", "--platform", "linux/s390x", name, check=125)
    assert "no image for linux/s390x in its index (it has: linux/amd64, linux/arm64/v8)" in out.stderr


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs Debian's skopeo")
def test_a_zstd_layer_written_by_skopeo_is_read(m, registry, tmp_path):
    build(m, tmp_path, "local/zst:1", "FROM busybox\nRUN echo compressed with zstd > /z\n")
    archive = tmp_path / "zst.tar"
    m("save", "--format", "oci", "-o", str(archive), "local/zst:1", check=0)
    skopeo("copy", "--dest-tls-verify=false", "--dest-compress-format", "zstd",
           f"oci-archive:{archive}:1", f"docker://{registry.domain}/zst:1")
    manifest, _ = registries.manifest_of(registry.domain, "zst", "1")
    assert all(layer["mediaType"].endswith("+zstd") for layer in manifest["layers"])
    out = m("run", "--rm", "--network", "none", f"{registry.domain}/zst:1", "cat", "/z", check=0)
    assert out.stdout == "compressed with zstd\n"


# --- auth ---------------------------------------------------------------------------------

def test_basic_auth_login_push_pull_logout(m, tmp_path, docker_config):
    d = tmp_path / "basic"
    d.mkdir()
    registries.htpasswd(str(d / "htpasswd"), {"alice": "s3cret"})
    reg = registries.Registry(str(d), auth=("htpasswd", str(d / "htpasswd")))
    try:
        name = f"{reg.domain}/private:1"
        build(m, tmp_path, name, "FROM busybox\nRUN echo private > /p\n")
        out = m("push", name, check=125)
        assert f"minirun login {reg.domain}" in out.stderr and out.stderr.count("\n") == 1
        wrong = m("login", "-u", "alice", "--password-stdin", reg.domain, input="nope\n", check=125)
        assert "access denied" in wrong.stderr and wrong.stderr.count("\n") == 1
        assert not (docker_config / "config.json").exists()
        m("login", "-u", "alice", "--password-stdin", reg.domain, input="s3cret\n", check=0)
        config = json.loads((docker_config / "config.json").read_text())
        assert reg.domain in config["auths"]
        assert os.stat(docker_config / "config.json").st_mode & 0o077 == 0
        m("push", name, check=0)
        m("rmi", name, check=0)
        m("pull", name, check=0)
        m("logout", reg.domain, check=0)
        m("rmi", name, check=0)
        assert "login" in m("pull", name, check=125).stderr
    finally:
        reg.stop()


def grants(user, repo):
    if user == "alice":
        return {"pull", "push"}
    if user == "reader":
        return {"pull"}
    return {"pull"} if repo.startswith("public/") else set()


@pytest.fixture
def token_registry(tmp_path):
    d = tmp_path / "token"
    d.mkdir()
    tokens = registries.TokenService(str(d), {"alice": "s3cret", "reader": "r3ad"}, grants)
    reg = registries.Registry(str(d), auth=("token", tokens))
    yield reg, tokens
    reg.stop()
    tokens.stop()


def test_token_auth_scopes_push_pull_and_anonymous(m, tmp_path, docker_config, token_registry):
    reg, tokens = token_registry
    public, private = f"{reg.domain}/public/app:1", f"{reg.domain}/team/app:1"
    build(m, tmp_path, public, "FROM busybox\nRUN echo public > /x\n")
    m("tag", public, private, check=0)
    assert "access denied" in m("push", public, check=125).stderr        # anonymous: no push
    bad = m("login", "-u", "alice", "--password-stdin", reg.domain, input="wrong\n", check=125)
    assert "refused the user name or password of 'alice'" in bad.stderr
    m("login", "-u", "alice", "--password-stdin", reg.domain, input="s3cret\n", check=0)
    m("push", public, check=0)
    m("push", private, check=0)
    m("login", "-u", "reader", "--password-stdin", reg.domain, input="r3ad\n", check=0)
    m("tag", public, f"{reg.domain}/team/other:1", check=0)
    denied = m("push", f"{reg.domain}/team/other:1", check=125)
    assert "access denied" in denied.stderr and denied.stderr.count("\n") == 1   # pull only
    m("logout", reg.domain, check=0)
    for n in (public, private, f"{reg.domain}/team/other:1"):
        m("rmi", n, check=0)
    m("pull", public, check=0)                                   # anonymous pull of public/
    assert "access denied" in m("pull", private, check=125).stderr
    assert tokens.issued > 0


def test_an_expired_token_is_asked_for_again(token_registry, m):
    """The registry allows 60 s of clock skew past a JWT's exp: the first
    token is issued already 57 s past it, and the client is told it lasts
    an hour. Once it is refused, the client must ask for a new one."""
    from minirun.image.registry import Registry, pull_scope
    reg, tokens = token_registry
    client = Registry(reg.domain, m.root, ("alice", "s3cret"))
    blob, scope = "sha256:" + "0" * 64, pull_scope("public/t")
    tokens.lifetime, tokens.claimed = -57, 3600
    assert client.has_blob("public/t", blob, scope) is False          # accepted, for ~3 s more
    issued, tokens.lifetime = tokens.issued, 300
    time.sleep(4)
    assert client.has_blob("public/t", blob, scope) is False          # refused, then asked again
    assert tokens.issued == issued + 1


def test_a_registry_behind_tls_needs_its_ca(m, tmp_path):
    d = tmp_path / "tls"
    d.mkdir()
    ca = registries.make_key_and_cert(str(d), "ca")
    registries.make_key_and_cert(str(d), "server", ca=ca)
    reg = registries.Registry(str(d), tls=(str(d / "server.crt"), str(d / "server.key")))
    try:
        name = f"{reg.domain}/secure:1"
        build(m, tmp_path, name, "FROM busybox\n")
        out = m("push", name, check=125)
        assert "speaks HTTPS" in out.stderr and "certs.d" in out.stderr and out.stderr.count("\n") == 1
        certs = os.path.join(m.root, "certs.d", reg.domain)
        os.makedirs(certs)
        other = registries.make_key_and_cert(str(d), "other-ca")[1]       # the wrong CA first
        shutil.copy(d / "other-ca.crt", os.path.join(certs, "ca.crt"))
        out = m("push", name, check=125)
        assert "TLS failed" in out.stderr and "certificate verify failed" in out.stderr and \
            out.stderr.count("\n") == 1 and other is not None
        shutil.copy(d / "ca.crt", os.path.join(certs, "ca.crt"))
        m("push", name, check=0)
        m("rmi", name, check=0)
        m("pull", name, check=0)
    finally:
        reg.stop()
