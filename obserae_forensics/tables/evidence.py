"""Outputs never land on the evidence they were made from.

Every command that writes reads something a responder may not be able to capture again:
the captures and nfcapd files, and the run directories that recombine and export read. A
mistyped path (`inspect a.pcap --flows a.pcap`, `sessionize caps --out caps --force`,
`recombine run --export-flows run/flows.parquet --force`) used to replace that evidence
without a word; `--force` means "replace my earlier output", never "replace my input", so
these checks hold with it too. Paths are compared by the files they name (`os.path.samefile`
and resolved parents), so a symlink, a hard link or `./x/../x` does not get around them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import UsageError
from .layout import RUN_FILES


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be examined): not the same file
        return False


def check_output_file(target: Path, evidence: Iterable[Path], option: str, *, force: bool) -> None:
    """`target` (a file about to be written) must not exist unless `force`, and never be
    one of the `evidence` files nor anything but a regular file: a write "replaced"
    /dev/null with a Parquet file (run as root), and opening a named pipe to write waits for
    a reader forever."""
    if not target.exists():
        return
    if not target.is_file():
        raise UsageError(
            f"{option} {target} exists and is not a regular file; refusing to replace it"
        )
    for path in evidence:
        if _same(target, path):
            raise UsageError(
                f"{option} {target} would overwrite {path}, which this command "
                "reads; refusing (even with --force): give another path"
            )
    if not force:
        raise UsageError(f"{option} {target} already exists (use --force to replace it)")


def refuse_directory_over_evidence(target: Path, evidence: Iterable[Path], option: str) -> None:
    """`target` (a directory that --force would replace whole) must not be or hold any of
    the `evidence` paths."""
    if not target.exists():
        return
    for path in evidence:
        parents = {*Path(os.path.abspath(path)).parents, *path.resolve().parents}
        if _same(target, path) or any(_same(target, parent) for parent in parents):
            raise UsageError(
                f"{option} {target} holds the input {path}; refusing to replace "
                "it (even with --force): give another output directory"
            )


def run_files(run_dirs: Iterable[Path]) -> list[Path]:
    """The RUN_FILES present in run directories."""
    return [run / name for run in run_dirs for name in RUN_FILES if (run / name).is_file()]
