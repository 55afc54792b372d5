"""Reading a run directory's manifest.json back: one place for recombine and query.

The manifest is what `sessionize` writes last; a directory without a readable one is not a
run (or a run that died), and every reader says so the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .layout import MANIFEST_FILE


def sha256_file(path: Path) -> str:
    """The digest a manifest cites for an input, and an export checks the input against."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a sessionize output directory; UsageError if it is not one."""
    manifest_path = run_dir / MANIFEST_FILE
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a directory (expected a sessionize output directory)")
    if not manifest_path.is_file():
        raise UsageError(f"{run_dir}: no {MANIFEST_FILE}; is this a sessionize output directory?")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{manifest_path}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise UsageError(f"{manifest_path}: the manifest is not a JSON object")
    return manifest
