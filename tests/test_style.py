"""The checkout is `ruff` clean: lint and format, as configured in pyproject.toml.

Both ran by hand before; nothing kept them true between sessions. The format check keeps
a maintainer's first `ruff format` from rewriting files they never meant to touch.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ruff.__main__ import find_ruff_bin

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_checkout_is_ruff_clean(command: list[str]) -> None:
    done = subprocess.run(
        [find_ruff_bin(), *command, "--no-cache", str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
