"""Docker's own parser cases (../shared/conformance), through our CLI, as the
shared runner drives it. Skipped, saying why, where ../shared is absent."""
import os
import subprocess
import sys

import pytest

RUNNER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "conformance",
                      "buildkit-parser", "compare.py")


@pytest.mark.skipif(not os.path.exists(RUNNER), reason=f"conformance corpus not found at {RUNNER}")
def test_buildkit_parser_conformance():
    cmd = f"{sys.executable} -m minirun dockerfile parse --format buildkit-json {{}}"
    proc = subprocess.run([sys.executable, RUNNER, "--lines", "--heredocs", "--cmd", cmd],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.strip().endswith("41 passed, 0 failed")
