"""Reading a run directory's manifest.json back: one place for recombine and query.

The manifest is what `sessionize` writes last; a directory without a readable one is not a
run (or a run that died), and every reader says so the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
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


def changed_tables(
    run_dir: Path, manifest: dict[str, Any], names: Iterable[str], *, hashed: bool = True
) -> list[str]:
    """What differs between the tables `names` in `run_dir` and what the manifest's
    `outputs` cite: a table edited, swapped or cut since the run is still read, since the
    responder may mean it, but said, because every count read from it is no longer what
    sessionize wrote (a review: recombine and load read such tables without a word).

    A missing table is said only where the manifest cites it: a run made without a Flow
    Matrix has no session_matches.parquet and is fine. `hashed=False` compares sizes alone,
    for a table read in part (its SHA-256 would cost a whole read). Manifests from before
    `outputs` was kept give nothing to compare and nothing is said.
    """
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict):
        return []
    found = []
    for name in names:
        cited = outputs.get(name)
        if not isinstance(cited, dict):
            continue
        path = run_dir / name
        size, digest = cited.get("size"), cited.get("sha256")
        if not path.is_file():
            found.append(f"{name} is missing, though the manifest cites it (outputs)")
        elif isinstance(size, int) and path.stat().st_size != size:
            found.append(
                f"{name} is {path.stat().st_size} bytes where the manifest cites {size} "
                "(outputs): the table was changed since the run, and what is read from it "
                "is not what sessionize wrote"
            )
        elif hashed and isinstance(digest, str) and sha256_file(path) != digest:
            found.append(
                f"{name}'s SHA-256 differs from the manifest's (outputs): the table was "
                "changed since the run, and what is read from it is not what sessionize "
                "wrote"
            )
    return found
