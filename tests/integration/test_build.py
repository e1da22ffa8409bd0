"""minirun build, checked by running what it built and by reading the store:
Docker's instruction semantics, the cache, .dockerignore, safety, multi-stage."""
import json
import os
import subprocess
import tarfile
import threading

import pytest

from tests.conftest import Minirun, needs_root, write_tree

pytestmark = needs_root


write = write_tree


def build(m, ctx, *args, check=0):
    return m("build", *args, str(ctx), check=check)


def run_out(m, image, *cmd):
    return m("run", "--rm", "--network", "none", image, *cmd, check=0).stdout


def config_of(m, image):
    return json.loads(m("inspect", image, check=0).stdout)[0]["config"]


def store_files(root):
    """What a failed build must not add to: layers, images, names, temporaries."""
    out = set()
    for sub in ("layers", "images", "tmp"):
        d = os.path.join(root, sub)
        out |= {f"{sub}/{e}" for e in (os.listdir(d) if os.path.isdir(d) else [])}
    return out


def test_instructions_do_what_docker_does(m, tmp_path):
    ctx = write(tmp_path, {
        "Dockerfile": """\
FROM busybox
ARG WHO=world
ENV GREETING=hello APP=/srv/app
WORKDIR $APP
COPY top.txt ./
COPY dir/ ./copied/
COPY a.conf b.conf conf/
COPY *.glob globbed/
COPY --chown=nobody:nogroup --chmod=0640 top.txt owned.txt
RUN echo "$GREETING $WHO from $(pwd)" > run.txt && rm /bin/ls
RUN ["/bin/sh", "-c", "echo exec form > exec.txt"]
RUN <<EOF
echo heredoc script > heredoc.txt
EOF
SHELL ["/bin/sh", "-ec"]
USER nobody
RUN id -u > /tmp/uid.txt
USER root
LABEL org.example.tier=demo
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat run.txt"]
""",
        "top.txt": "top\n", "dir/inner/deep.txt": "deep\n", "a.conf": "a\n", "b.conf": "b\n",
        "one.glob": "1\n", "two.glob": "2\n",
    })
    out = build(m, ctx, "-t", "demo", "--build-arg", "WHO=builders").stdout
    assert "Step 1/23 : FROM busybox" in out and "Successfully tagged demo:latest" in out
    assert run_out(m, "demo") == "hello builders from /srv/app\n"
    listing = run_out(m, "demo", "cd /srv/app && find . | sort && cat copied/inner/deep.txt "
                                 "exec.txt heredoc.txt /tmp/uid.txt && stat -c '%U:%G %a' owned.txt "
                                 "; ls /bin/ls 2>&1; true")
    for path in ("./top.txt", "./copied/inner/deep.txt", "./conf/a.conf", "./conf/b.conf",
                 "./globbed/one.glob", "./globbed/two.glob"):
        assert path in listing
    assert "./dir" not in listing                        # a directory's contents, not itself
    assert "deep\nexec form\nheredoc script\n65534\n" in listing
    assert "nobody:nogroup 640" in listing
    assert "No such file" in listing                     # rm in RUN: a whiteout in the layer
    cfg = config_of(m, "demo")
    assert cfg["WorkingDir"] == "/srv/app"
    assert "GREETING=hello" in cfg["Env"] and not any(e.startswith("WHO=") for e in cfg["Env"])
    assert cfg["Labels"] == {"org.example.tier": "demo"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}
    assert cfg["Shell"] == ["/bin/sh", "-ec"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat run.txt"]
    history = m("history", "--no-trunc", "demo", check=0).stdout
    assert "rm /bin/ls" in history


def test_cache_hits_then_rebuilds_from_the_changed_copy(m, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo one > /one\nCOPY f.txt /\n"
                                         "RUN cat /f.txt > /copy\n", "f.txt": "v1\n"})
    first = build(m, ctx, "-t", "c").stdout
    assert "Using cache" not in first
    again = build(m, ctx, "-t", "c").stdout
    assert again.count("Using cache") == 3
    assert again.splitlines()[-2] == first.splitlines()[-2]      # the same image id
    os.utime(tmp_path / "f.txt", (1, 1))                         # touched, same content
    assert build(m, ctx, "-t", "c").stdout.count("Using cache") == 3
    (tmp_path / "f.txt").write_text("v2\n")
    changed = build(m, ctx, "-t", "c").stdout
    assert changed.count("Using cache") == 1                      # only the RUN before COPY
    assert run_out(m, "c", "cat", "/copy") == "v2\n"
    assert "Using cache" not in build(m, ctx, "--no-cache", "-t", "c").stdout


def test_entrypoint_after_a_cached_cmd_keeps_it(m, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCMD [\"one\"]\n")
    build(m, str(tmp_path))
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCMD [\"one\"]\nENTRYPOINT [\"echo\"]\n")
    out = build(m, str(tmp_path), "-t", "ep").stdout
    assert "Using cache" in out                          # the CMD step came from the cache
    assert run_out(m, "ep") == "one\n"                  # and ENTRYPOINT kept it, as Docker


def test_identical_layers_are_stored_once(m, tmp_path):
    for name in ("one", "two"):
        ctx = write(tmp_path / name, {"Dockerfile": f"FROM busybox\nLABEL which={name}\n"
                                                    f"COPY same.txt /same.txt\n",
                                      "same.txt": "identical\n"})
        os.utime(os.path.join(ctx, "same.txt"), (1_000_000, 1_000_000))
        build(m, ctx, "-t", name)
    one, two = (config_of_image(m, n)["rootfs"]["diff_ids"] for n in ("one", "two"))
    assert one == two and config_of_image(m, "one")["Id"] != config_of_image(m, "two")["Id"]
    assert len(os.listdir(os.path.join(m.root, "layers"))) == 2     # busybox's and the copy


def test_source_date_epoch_makes_builds_reproducible(m, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo built > /when && mkdir -p /a/b\n"
                                         "COPY f /f\n", "f": "x\n"})
    ids = []
    for _ in range(2):
        ids.append(build(m, ctx, "-q", "--no-cache", "--build-arg",
                         "SOURCE_DATE_EPOCH=1000000000").stdout.strip())
        os.utime(os.path.join(ctx, "f"))            # a newer mtime is clamped too
    assert ids[0] == ids[1]
    assert config_of_image(m, ids[0])["created"] == "2001-09-09T01:46:40Z"


def test_build_arg_is_part_of_the_run_cache_key(m, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nARG V=a\nRUN echo $V > /v\n"})
    build(m, ctx, "-t", "arg")
    assert "Using cache" in build(m, ctx, "-t", "arg").stdout
    assert "Using cache" not in build(m, ctx, "-t", "arg", "--build-arg", "V=b").stdout
    assert run_out(m, "arg", "cat", "/v") == "b\n"


def test_multi_stage_copy_from_and_target(m, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": """\
FROM busybox AS builder
RUN mkdir -p /out && echo built > /out/artifact && echo gone > /out/tmp && rm /out/tmp
FROM scratch AS bare
COPY --from=builder /out/artifact /artifact
FROM busybox
COPY --from=builder /out /result
COPY --from=1 /artifact /again
COPY --from=busybox /etc/passwd /from-image
"""})
    build(m, ctx, "-t", "multi")
    assert run_out(m, "multi", "sh", "-c", "ls /result; cat /again") == "artifact\nbuilt\n"
    assert run_out(m, "multi", "head", "-1", "/from-image").startswith("root:")
    build(m, ctx, "-t", "bare", "--target", "bare")
    cfg = json.loads(m("inspect", "bare", check=0).stdout)[0]
    assert len(cfg["rootfs"]["diff_ids"]) == 1
    missing = build(m, ctx, "--target", "nope", check=125)
    assert "target stage 'nope' could not be found" in missing.stderr


def test_dockerignore_patterns_and_exceptions(m, tmp_path):
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nCOPY . /ctx\n",
        ".dockerignore": "# comment\n**/*.log\n!keep.log\nsecret/\n/Dockerfile\n",
        "a.log": "x", "sub/b.log": "x", "keep.log": "kept", "secret/key": "k", "ok.txt": "ok",
    })
    build(m, ctx, "-t", "ign")
    listing = run_out(m, "ign", "find", "/ctx").split()
    assert sorted(listing) == ["/ctx", "/ctx/.dockerignore", "/ctx/keep.log", "/ctx/ok.txt",
                               "/ctx/sub"]
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM busybox\nCOPY secret/key /k\n")
    refused = build(m, ctx, check=1)
    assert "excluded by .dockerignore" in refused.stderr


@pytest.mark.parametrize("dockerfile, files, message", [
    ("FROM busybox\nCOPY ../outside /x\n", {}, "Dockerfile:2: COPY failed: forbidden path "
                                              "outside the build context"),
    ("FROM busybox\nCOPY link /x\n", {"@link": "/etc/passwd"}, "forbidden path outside"),
    ("FROM busybox\nENV A=1\nRUN exit 3\n", {}, "Dockerfile:3: RUN: the command"),
    ("FROM busybox\nRUN nosuchcommand-xyz\n", {}, "returned a non-zero code: 127"),
    ("FROM busybox\nADD http://example.invalid/f /f\n", {}, "Dockerfile:2: ADD http://"),
    ("FROM nosuchimage\n", {}, "Dockerfile:1:"),                     # not local; Docker Hub pulled
    ("FROM 127.0.0.1:1/nosuchimage\n", {}, "Dockerfile:1: 127.0.0.1:1: cannot reach the registry: "
                                           "Connection refused"),
    ("FROM busybox\nBOGUS x\n", {}, "Dockerfile:2: unknown instruction: BOGUS"),
    ("FROM scratch\nRUN true\n", {}, "Dockerfile:2: RUN in an empty image"),
    ("FROM busybox\nCOPY --nope=1 a /\n", {}, "Dockerfile:2: unknown flag: --nope"),
    ("FROM busybox\nRUN --mount=type=nope,target=/x true\n", {},
     "Dockerfile:2: RUN --mount: unknown type 'nope'"),
    ("FROM busybox\nRUN --mount=type=cache,target=/x,color=red true\n", {},
     "Dockerfile:2: RUN --mount=type=cache: unknown option 'color'"),
    ("FROM busybox\nRUN --mount=type=cache true\n", {}, "Dockerfile:2: RUN --mount=type=cache: "
                                                        "target= is required"),
    ("FROM busybox\nRUN --mount=type=secret,id=tok,required=true true\n", {},
     "Dockerfile:2: RUN --mount=type=secret,id=tok: no such secret"),
    ("FROM busybox\nRUN --mount=type=ssh true\n", {}, "Dockerfile:2: RUN --mount=type=ssh: "
                                                      "minirun forwards no SSH agent"),
    ("FROM busybox\nRUN --security=insecure true\n", {}, "Dockerfile:2: RUN --security=insecure"),
    ("FROM busybox\nRUN --network=bridge2 true\n", {}, "Dockerfile:2: RUN --network=bridge2"),
    ("FROM --platform=linux/s390x busybox\n", {}, "Dockerfile:1: FROM busybox: the image in the "
                                                  "store is for linux/"),
    ("FROM --platform=linux/s390x scratch\nRUN true\n", {}, "Dockerfile:2: RUN in a linux/s390x "
                                                           "stage would need emulation"),
    ("FROM --platform=linux busybox\n", {}, "Dockerfile:1: FROM --platform=linux: "),
    ("FROM busybox\nADD https://example.invalid/repo.git /r\n", {},
     "Dockerfile:2: ADD https://example.invalid/repo.git: adding a git repository is not supported"),
    ("FROM busybox\nCOPY --checksum=sha256:00 a /\n", {}, "Dockerfile:2: unknown flag: --checksum"),
    ("# check=skip=NoSuchRule\nFROM busybox\n", {}, "Dockerfile:1: # check=skip=NoSuchRule"),
    ("FROM busybox\nCOPY missing.txt /\n", {}, "file not found in build context"),
])
def test_bad_builds_fail_clearly_and_leave_nothing(m, tmp_path, dockerfile, files, message):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, content in files.items():
        if name.startswith("@"):
            os.symlink(content, ctx / name[1:])
    m("images", "-q", check=0)
    before = store_files(m.root)
    failed = build(m, ctx, "-t", "bad", check=None)
    assert failed.returncode == 1, failed.stderr        # as docker build
    assert message in failed.stderr, failed.stderr
    ours = [l for l in failed.stderr.splitlines() if l.startswith("minirun:")]
    assert "Traceback" not in failed.stderr and len(ours) == 1   # the step's own output aside
    assert store_files(m.root) == before
    assert "bad" not in m("images", check=0).stdout


def test_a_build_killed_mid_run_leaves_nothing_for_long(m, tmp_path):
    import signal
    import time
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN touch /started && sleep 30\n"})
    m("images", "-q", check=0)
    before = store_files(m.root)
    proc = m.popen("build", "-t", "killed", ctx, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not any(os.path.exists(os.path.join(m.root, "tmp", e, "upper", "started"))
                  for e in os.listdir(os.path.join(m.root, "tmp"))):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the RUN container died with it (the leak check sees no process); the
    # next build clears the dead one's work in progress
    build(m, write(tmp_path / "next", {"Dockerfile": "FROM busybox\nENV A=1\n"}), "-t", "next")
    layers = {f for f in store_files(m.root) if f.startswith("layers/")}
    assert layers == {f for f in before if f.startswith("layers/")}   # ENV adds none
    assert os.listdir(os.path.join(m.root, "tmp")) == []


def test_exit_code_of_the_failing_run_is_named(m, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN exit 3\n"})
    failed = build(m, ctx, check=None)
    assert "returned a non-zero code: 3" in failed.stderr


def test_add_extracts_local_tar_archives(m, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "inside.txt").write_text("from the archive\n")
    with tarfile.open(tmp_path / "bundle.tar.gz", "w:gz") as t:
        t.add(src / "inside.txt", arcname="pkg/inside.txt")
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nADD bundle.tar.gz /opt/\n"})
    build(m, ctx, "-t", "added")
    assert run_out(m, "added", "cat", "/opt/pkg/inside.txt") == "from the archive\n"


def test_onbuild_triggers_run_in_the_child_build(m, tmp_path):
    parent = write(tmp_path / "p", {"Dockerfile": "FROM busybox\nONBUILD RUN echo triggered > /t\n"})
    build(m, parent, "-t", "parent")
    assert config_of(m, "parent")["OnBuild"] == ["RUN echo triggered > /t"]
    child = write(tmp_path / "c", {"Dockerfile": "FROM parent\n"})
    out = build(m, child, "-t", "child").stdout
    assert "Executing ONBUILD trigger" in out
    assert run_out(m, "child", "cat", "/t") == "triggered\n"
    assert "OnBuild" not in config_of(m, "child")


def test_two_builds_at_once_both_succeed(m, tmp_path):
    ctxs = [write(tmp_path / str(i), {"Dockerfile": f"FROM busybox\nRUN echo {i} > /n\n"
                                                    f"COPY f /f\nRUN echo shared > /s\n",
                                      "f": "same\n"}) for i in range(2)]
    ctxs.append(ctxs[0])
    results = [None] * len(ctxs)

    def go(i):
        results[i] = m("build", "-t", f"par{i}", ctxs[i])
    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(ctxs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert run_out(m, "par0", "cat", "/n") == "0\n"
    assert run_out(m, "par1", "cat", "/n") == "1\n"
    assert run_out(m, "par2", "cat", "/n") == "0\n"
    assert os.listdir(os.path.join(m.root, "tmp")) == []


def test_a_hundred_layers_mount_and_run(m, tmp_path):
    lines = ["FROM busybox"] + [f"COPY f{i} /layers/" for i in range(100)]
    files = {f"f{i}": f"{i}\n" for i in range(100)}
    ctx = write(tmp_path, {"Dockerfile": "\n".join(lines) + "\n", **files})
    build(m, ctx, "-t", "many", "-q")
    assert len(config_of_image(m, "many")["rootfs"]["diff_ids"]) == 101
    assert run_out(m, "many", "sh", "-c", "ls /layers | wc -l").strip() == "100"


def config_of_image(m, image):
    return json.loads(m("inspect", image, check=0).stdout)[0]


def test_rmi_tag_history_and_prune(m, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo x > /x\n"})
    build(m, ctx, "-t", "keep")
    m("tag", "keep", "keep:v2", check=0)
    m("create", "--name", "user", "--network", "none", "keep", check=0)
    refused = m("rmi", "keep:v2")
    assert refused.returncode == 0 and "Untagged: keep:v2" in refused.stdout
    refused = m("rmi", "keep")
    assert refused.returncode == 125 and "container" in refused.stderr
    m("rm", "user", check=0)
    removed = m("rmi", "keep", check=0).stdout
    assert "Deleted: sha256:" in removed
    assert "keep" not in m("images", check=0).stdout
    m("image", "prune", check=0)
    layers = os.listdir(os.path.join(m.root, "layers"))
    assert len(layers) == 1                                  # busybox's own
    bad = m("tag", "busybox", "Not/Valid")
    assert bad.returncode == 125 and "invalid reference format" in bad.stderr


def test_save_and_load_round_trip_in_both_formats(m, tmp_path, store_root):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN rm /bin/ls && echo saved > /s && "
                                         "rm -rf /home && mkdir /home && touch /home/only\n"})
    build(m, ctx, "-t", "trip")
    image_id = config_of_image(m, "trip")["Id"]
    for fmt in ("docker", "oci"):
        archive = tmp_path / f"trip-{fmt}.tar"
        m("save", "--format", fmt, "-o", str(archive), "trip", check=0)
        names = tarfile.open(archive).getnames()
        assert ("manifest.json" if fmt == "docker" else "index.json") in names
        other = Minirun(str(tmp_path / f"store-{fmt}"))
        assert "Loaded image: trip:latest" in other("load", "-i", str(archive), check=0).stdout
        assert config_of_image(other, "trip")["Id"] == image_id
        assert run_out(other, "trip", "sh", "-c", "cat /s; ls /bin/ls 2>&1; ls /home") == \
            "saved\nls: /bin/ls: No such file or directory\nonly\n"
    whiteouts = [n for n in tarfile.open(tmp_path / "trip-docker.tar").getnames()
                 if n.endswith("layer.tar")]
    assert any(any(e.endswith(".wh.ls") for e in tarfile.open(fileobj=tarfile.open(
        tmp_path / "trip-docker.tar").extractfile(w)).getnames()) for w in whiteouts)


def test_damaged_or_unwritable_archives_are_one_line_errors(m, tmp_path):
    m("save", "-o", str(tmp_path / "ok.tar"), "busybox", check=0)
    data = (tmp_path / "ok.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.tar").write_text("not a tar\n")
    for args, message in ((["load", "-i", str(tmp_path / "cut.tar")], "damaged archive"),
                          (["load", "-i", str(tmp_path / "junk.tar")], "not a tar archive"),
                          (["save", "-o", str(tmp_path / "no" / "x.tar"), "busybox"],
                           "cannot write")):
        done = m(*args)
        assert done.returncode == 125 and message in done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
    assert os.listdir(os.path.join(m.root, "tmp")) == []


def test_import_makes_a_one_layer_image(m, tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    busybox = "/bin/busybox" if os.path.exists("/bin/busybox") else "/usr/bin/busybox"
    subprocess.run(["cp", busybox, str(rootfs / "bin/busybox")], check=True)
    os.symlink("busybox", rootfs / "bin/sh")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tmp_path / "rootfs.tar"), "."], check=True)
    m("import", str(tmp_path / "rootfs.tar"), "imported", check=0)
    assert len(config_of_image(m, "imported")["rootfs"]["diff_ids"]) == 1
    assert run_out(m, "imported", "/bin/sh", "-c", "echo imported-ok") == "imported-ok\n"


@pytest.mark.parametrize("entry", ["../escape.txt", "/abs/../../escape.txt"])
def test_loading_a_tar_that_climbs_out_is_refused(m, tmp_path, entry):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo(entry)
        data = b"pwned"
        info.size = len(data)
        import io
        t.addfile(info, io.BytesIO(data))
    done = m("import", str(evil), "evil")
    assert done.returncode == 125 and "climbs out" in done.stderr
    assert not (tmp_path / "escape.txt").exists()
    assert os.listdir(os.path.join(m.root, "tmp")) == []


def test_a_symlink_in_a_tar_cannot_carry_writes_outside(m, tmp_path):
    import io
    target = tmp_path / "outside"
    target.mkdir()
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, str(target)
        t.addfile(link)
        info = tarfile.TarInfo("link/planted.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    done = m("import", str(evil), "evil")
    assert done.returncode == 125 and "symlink" in done.stderr
    assert os.listdir(target) == []


def test_each_steps_id_is_an_image_a_learner_can_run(m, tmp_path):
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nARG V=1\nENV A=$V\nRUN echo $A > /a\n"})
    out = build(m, ctx, "--no-cache", "-t", "steps", check=0).stdout.splitlines()
    ids = [line.split()[1] for line in out if line.startswith(" ---> ") and "Running in" not in line]
    assert len(ids) == 4                                   # FROM, ARG, ENV, RUN: a line each
    assert out[-2] == f"Successfully built {ids[-1]}"      # the last step's id is the image's
    assert run_out(m, ids[2], "sh", "-c", "echo $A; ls /a 2>/dev/null || echo no-a") == "1\nno-a\n"
    assert run_out(m, ids[3], "cat", "/a") == "1\n"
    m("rmi", "steps", check=0)
    m("image", "prune", check=0)                           # intermediates are unnamed: they go
    assert m("inspect", ids[2]).returncode != 0


def test_steps_that_make_the_same_layer_twice_still_build(m, tmp_path):
    """Two RUN steps that change nothing both make the empty layer: the
    image lists it twice, and overlayfs refuses one directory twice."""
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN true\nRUN true\nRUN echo ok > /ok\n"})
    build(m, ctx, "-t", "twice")
    assert run_out(m, "twice", "cat", "/ok") == "ok\n"
