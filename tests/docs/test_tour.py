"""The tour is executable documentation: every ```console block of
docs/tour/*.md is run here, and what each `$ command` prints is compared
with the lines the tour shows under it — so the tour cannot rot.

Each section runs in one bash, from the repository, with minirun on PATH
and a scratch store of its own in $MINIRUN_ROOT. In the expected output,
ids (12 or 64 hex digits) match any id, `...` inside a line matches any
text, and a line that is only `...` matches any number of lines.

    python -m tests.docs.test_tour docs/tour/02-isolation.md   # print what each command printed
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import ROOT, needs_root

pytestmark = needs_root
SECTIONS = sorted(glob.glob(os.path.join(ROOT, "docs", "tour", "[0-9]*.md")))
MARK = "@@tour-command@@"


def examples(path):
    """[(line number, command, expected output lines)] of a section's console blocks."""
    out, block = [], False
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("```"):
                block = line == "```console"
                continue
            if not block:
                continue
            if line.startswith("$ "):
                out.append((n, line[2:], []))
            elif out:
                out[-1][2].append(line)
    return out


def run_section(path, store):
    """Run every command of a section in one bash; returns each one's output."""
    cmds = examples(path)
    script = ["exec 2>&1"]
    for i, (_, cmd, _) in enumerate(cmds):
        script += [f"echo '{MARK} {i}'", cmd]
    script.append(f"echo '{MARK} end'")
    env = dict(os.environ, MINIRUN_ROOT=store, PATH=os.path.join(ROOT, ".venv", "bin") + ":" +
               os.environ["PATH"], COLUMNS="200")
    env.pop("MINIRUN_EXPLAIN", None)
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    outputs = re.split(rf"^{MARK} \S+\n", done.stdout, flags=re.M)[1:]
    return cmds, outputs


def normalize(text):
    """Any id reads <id>; trailing blank lines do not count."""
    text = text.rstrip("\n") + "\n" if text.strip() else ""
    return re.sub(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b", "<id>", text)


def pattern(expected):
    """A regex for the expected lines: `...` is a wildcard, as described above."""
    parts = []
    while expected and not expected[-1]:
        expected = expected[:-1]
    for line in expected:
        if line == "...":
            parts.append(r"(?:.*\n)*?")
        else:
            parts.append(".*?".join(re.escape(normalize(p).rstrip("\n")) for p in line.split("..."))
                         + r"\n")
    return "".join(parts)


def mismatches(path, store):
    cmds, outputs = run_section(path, store)
    bad = []
    for (n, cmd, expected), actual in zip(cmds, outputs):
        if not re.fullmatch(pattern(expected), normalize(actual)):
            bad.append(f"{os.path.basename(path)}:{n}: $ {cmd}\n--- the tour shows:\n"
                       + "".join(e + "\n" for e in expected) + "--- it printed:\n" + actual)
    if len(outputs) < len(cmds):
        bad.append(f"{os.path.basename(path)}: only {len(outputs)} of {len(cmds)} commands ran")
    return bad


@pytest.mark.parametrize("path", SECTIONS, ids=[os.path.basename(p) for p in SECTIONS])
def test_the_tour_shows_what_minirun_prints(path, tmp_path):
    store = str(tmp_path / "store")
    try:
        bad = mismatches(path, store)
    finally:
        subprocess.run([sys.executable, "-m", "minirun", "--root", store, "rm", "-f",
                        *subprocess.run([sys.executable, "-m", "minirun", "--root", store,
                                         "ps", "-aq"], capture_output=True, text=True).stdout.split()],
                       capture_output=True)
    assert not bad, "\n\n".join(bad)


def test_every_section_has_commands_and_a_check():
    assert len(SECTIONS) >= 8
    for path in SECTIONS:
        text = open(path).read()
        assert examples(path), f"{path}: no console blocks"
        assert "## Check your work" in text and "## Think about" in text, path


if __name__ == "__main__":
    for path in sys.argv[1:]:
        store = tempfile.mkdtemp(prefix="minirun-tour-")
        try:
            cmds, outputs = run_section(path, store)
            for (n, cmd, _), out in zip(cmds, outputs):
                print(f"{n}: $ {cmd}\n{out}", end="")
        finally:
            shutil.rmtree(store, ignore_errors=True)
