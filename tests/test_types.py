"""The package passes `mypy --strict`, configured in pyproject.toml.

Type hints nobody checks drift from the code they describe; this keeps them true. The
stubs of pyarrow and pandas and mypy itself are pinned in the test extras, so what passes
here passes the same way on a fresh machine.
"""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[1]


def test_package_passes_mypy_strict() -> None:
    out, err, status = api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),  # warm on a second run, ignored by git
            str(ROOT / "obserae_forensics"),
        ]
    )
    assert status == 0, out + err
    assert out.startswith("Success: no issues found"), out
