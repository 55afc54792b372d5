"""numba's on-disk cache (`cache=True`) goes stale across modules; this drops what is stale.

numba keys a cached function on its own source file's timestamp and size only. Everything
else it compiled in, the constants of row.py, a helper like inference.infer_server, the
globals of any module the function reads, is frozen into the cached machine code without a
trace of where it came from. Edit inference.py in a checkout (or an editable install) and
the kernel keeps running the old ladder from its cache, tests included, until kernel.py
itself changes: this happened while the server-side ladder was being changed.

`drop_stale_jit_cache(globals())`, at the end of each module with cached functions, hashes
that module's source and the sources of every module of this package it holds a name from;
when the hash differs from the one recorded beside the cache, the cache files of all those
modules' functions are deleted before anything is compiled (a function of one module can be
compiled and cached from another's namespace: kernel.py caches inference.infer_server, whose
cache numba keys on inference.py alone), wherever numba keeps them (`__pycache__`, or
NUMBA_CACHE_DIR), so numba compiles afresh and caches again. A fresh install or a CI clone
has no cache and is not affected; errors (a read-only install) leave the cache alone, where
sources never change in place anyway.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

PACKAGE_ROOT = Path(__file__).resolve().parent

_Function = TypeVar("_Function", bound=Callable[..., Any])
_Scalar = TypeVar("_Scalar", bound=np.generic)


def njit(**options: Any) -> Callable[[_Function], _Function]:
    """`numba.njit(**options)`, typed as handing back the function it compiles.

    numba has no type hints: under `mypy --strict` every function it decorated became
    untyped, and so did every caller's use of it. The dispatcher it returns is called
    with the same arguments and returns the same values as the Python function (numba's
    own attributes, such as `py_func`, are not typed: tests reach them, the package
    does not)."""
    return cast(Callable[[_Function], _Function], numba.njit(**options))


def source_files(namespace: dict[str, Any]) -> list[Path]:
    """The module's own source and those of the package modules it holds names from
    (modules themselves, or functions, classes, dispatchers defined there)."""
    own = Path(namespace["__file__"]).resolve()
    found = {own}
    for value in list(namespace.values()):
        module = (
            value
            if isinstance(value, ModuleType)
            else sys.modules.get(getattr(value, "__module__", None) or "")
        )
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(PACKAGE_ROOT):
            found.add(Path(path).resolve())
    return sorted(found)


def sources_digest(paths: list[Path]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_directories(namespace: dict[str, Any]) -> list[Path]:
    """Where numba keeps the caches of the namespace's compiled functions (their own
    locator's choice), and the module's own `__pycache__`."""
    found = {Path(namespace["__file__"]).resolve().parent / "__pycache__"}
    for value in list(namespace.values()):
        path = getattr(getattr(value, "_cache", None), "_cache_path", None)
        if isinstance(path, str):
            found.add(Path(path))
    return sorted(found)


def drop_stale_jit_cache(namespace: dict[str, Any]) -> bool:
    """Delete the numba cache files of the module's functions, and of those of the modules it
    draws on, when any of their sources changed since they were written; -> whether anything
    was dropped."""
    module_file = Path(namespace["__file__"]).resolve()
    stamp = module_file.parent / "__pycache__" / f"{module_file.stem}.jit-sources"
    try:
        sources = source_files(namespace)
        digest = sources_digest(sources)
        if stamp.is_file() and stamp.read_text() == digest:
            return False
        stale = [
            path
            for directory in cache_directories(namespace)
            for source in sources
            for suffix in ("nbi", "nbc")
            for path in directory.glob(f"{source.stem}.*.{suffix}")
        ]
        for path in stale:
            path.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{stamp.name}.", dir=stamp.parent)
        with os.fdopen(handle, "w") as out:
            out.write(digest)
        os.replace(temporary, stamp)
        return bool(stale)
    except OSError:
        return False


def read_only(array: npt.ArrayLike, dtype: type[_Scalar]) -> npt.NDArray[_Scalar]:
    """`array` as a read-only, C-contiguous view of `dtype` (a copy only if it is not one).

    numba compiles a function once for each combination of argument types it is called
    with, and a read-only array is a type of its own. Arrays Arrow lends without a copy are
    read-only, those numpy computes are not, and which one a call gets can depend on how the
    input was chunked: each new mix compiled the function again (the sessionizer's kernel
    takes over a minute) on the first run after install. Read-only views for every caller
    make it one type (aligned too: numba types a misaligned buffer apart as well)."""
    view = np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"]).view()
    view.flags.writeable = False
    return view
