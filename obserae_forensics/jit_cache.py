"""numba's on-disk cache (`cache=True`) goes stale across modules; this drops what is stale.

numba keys a cached function on its own source file's timestamp and size only. Everything
else it compiled in, the constants of row.py, a helper like inference.infer_server, the
globals of any module the function reads, is frozen into the cached machine code without a
trace of where it came from. Edit inference.py in a checkout (or an editable install) and
the kernel keeps running the old ladder from its cache, tests included, until kernel.py
itself changes: this happened while the server-side ladder was being changed.

`drop_stale_jit_cache(globals())`, at the end of each module with cached functions, hashes
that module's source and the sources of every module of this package it holds a name from;
when the hash differs from the one recorded beside the cache, the module's cache files are
deleted before anything is compiled, so numba compiles afresh and caches again. A fresh
install or a CI clone has no cache and is not affected; errors (a read-only install) leave
the cache alone, where sources never change in place anyway.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent


def source_files(namespace: dict[str, Any]) -> list[Path]:
    """The module's own source and those of the package modules it holds names from
    (modules themselves, or functions, classes, dispatchers defined there)."""
    own = Path(namespace["__file__"]).resolve()
    found = {own}
    for value in list(namespace.values()):
        module = value if isinstance(value, ModuleType) else sys.modules.get(
            getattr(value, "__module__", None) or "")
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(PACKAGE_ROOT):
            found.add(Path(path).resolve())
    return sorted(found)


def sources_digest(paths: list[Path]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def drop_stale_jit_cache(namespace: dict[str, Any]) -> bool:
    """Delete the module's numba cache files when its sources or its dependencies' changed
    since they were written; -> whether anything was dropped."""
    module_file = Path(namespace["__file__"]).resolve()
    cache = module_file.parent / "__pycache__"
    stamp = cache / f"{module_file.stem}.jit-sources"
    try:
        digest = sources_digest(source_files(namespace))
        if stamp.is_file() and stamp.read_text() == digest:
            return False
        stale = list(cache.glob(f"{module_file.stem}.*.nbi")) + list(
            cache.glob(f"{module_file.stem}.*.nbc"))
        for path in stale:
            path.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{stamp.name}.", dir=cache)
        with os.fdopen(handle, "w") as out:
            out.write(digest)
        os.replace(temporary, stamp)
        return bool(stale)
    except OSError:
        return False
