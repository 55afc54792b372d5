"""jit_cache: numba's cache is dropped when a module the cached code compiled in changes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from obserae_forensics import jit_cache
from obserae_forensics.sessionize import kernel, output


def _load(path: Path, name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_a_changed_dependency_drops_the_cache_and_nothing_else_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    elsewhere = tmp_path / "numba-cache-dir"  # NUMBA_CACHE_DIR, as a dispatcher reports it
    elsewhere.mkdir()
    (package / "a.py").write_text("X = 1\n")
    (package / "b.py").write_text("LIMIT = 10\n")
    b = _load(package / "b.py", "jit_cache_test_b")
    dispatcher = SimpleNamespace(
        _cache=SimpleNamespace(_cache_path=str(elsewhere)), __module__="jit_cache_test_b"
    )
    namespace = {"__file__": str(package / "a.py"), "b": b, "pathlib": pytest, "helper": dispatcher}
    monkeypatch.setattr(jit_cache, "PACKAGE_ROOT", package.resolve())
    cached = [
        package / "__pycache__" / "a.f-1.py311.nbi",
        package / "__pycache__" / "a.f-1.py311.1.nbc",
        # a function of b compiled and cached from a's namespace (kernel.py's _infer)
        package / "__pycache__" / "b.g-1.py311.nbi",
        elsewhere / "a.f-1.py311.nbi",
    ]
    other = package / "__pycache__" / "c.h-1.py311.nbi"  # a module a does not draw on

    def fill() -> None:
        for path in [*cached, other]:
            path.write_bytes(b"machine code")

    fill()
    assert jit_cache.drop_stale_jit_cache(namespace)  # no record yet: dropped
    assert not any(p.exists() for p in cached) and other.exists()
    fill()
    assert not jit_cache.drop_stale_jit_cache(namespace)  # nothing changed
    assert all(p.exists() for p in cached)
    (package / "b.py").write_text("LIMIT = 20\n")  # a constant the cached code froze in
    assert jit_cache.drop_stale_jit_cache(namespace)
    assert not any(p.exists() for p in cached) and other.exists()
    fill()
    (package / "a.py").write_text("X = 2\n")
    assert jit_cache.drop_stale_jit_cache(namespace)


def test_the_kernel_cache_depends_on_what_it_compiles_in() -> None:
    """The case that went stale: the ladder in inference.py and the layout in row.py."""
    names = {path.name for path in jit_cache.source_files(vars(kernel))}
    assert {"kernel.py", "row.py", "inference.py", "keys.py"} <= names
    names = {path.name for path in jit_cache.source_files(vars(output))}
    assert {"output.py", "row.py", "ids.py", "addresses.py"} <= names
    assert all(
        path.is_relative_to(jit_cache.PACKAGE_ROOT) for path in jit_cache.source_files(vars(kernel))
    )
