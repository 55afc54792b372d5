"""Shared fixtures: where the shared corpus is, and skips when it or an oracle is absent."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# The property tests' examples. `ci` (.ci/run sets OBSERAE_HYPOTHESIS=ci): the same examples
# on every run, drawn from each test's own source, so that CI passes or fails on the code
# and not on a draw (a helper's random run drew the one table a bucket test did not
# expect, thirty-sixth session). `explore` (the default, a developer's runs): new examples
# each run, which is how such tables are found; a failure prints the blob that replays
# it (@reproduce_failure). Neither has a deadline: the tests check results, never times,
# and numba compiles a kernel on its first call.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("OBSERAE_HYPOTHESIS", "explore"))


@pytest.fixture(autouse=True)
def _no_arp(monkeypatch: pytest.MonkeyPatch) -> None:
    """scapy gives an `Ether()` without a destination the MAC of its IP destination, which
    it asks the network for (an ARP request, 2 s to time out when nobody answers): one test
    of 31 frames took 63 s, and a test sent packets. Tests write frames, never send them."""
    import scapy.layers.inet
    import scapy.layers.l2

    def broadcast(ip: str, chainCC: int = 0) -> str:
        return "ff:ff:ff:ff:ff:ff"

    monkeypatch.setattr(scapy.layers.l2, "getmacbyip", broadcast)
    monkeypatch.setattr(scapy.layers.inet, "getmacbyip", broadcast)


REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
# beside the checkout, as the developers' machines hold it; OBSERAE_CORPUS names it elsewhere
CORPUS = Path(os.environ.get("OBSERAE_CORPUS") or REPO.parent / "shared" / "corpus").resolve()


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus (or $OBSERAE_CORPUS), or skip: the package never needs it, only
    these tests do."""
    if not (CORPUS / "README.md").is_file():
        pytest.skip(f"shared corpus not found at {CORPUS} (set OBSERAE_CORPUS to its folder)")
    return CORPUS


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


def need_tool(name: str) -> str:
    """Path of an oracle binary (nfdump, tshark), or skip the test with the reason."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install nfdump tshark)")
    return path


def refuse_listing(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Callable[..., object]:
    """Make `directory` unlistable (EACCES), as a mount the run may not read is: the tests
    run as root, whom chmod does not stop. Returns the real os.scandir, to put back."""
    listing = os.scandir

    def refused(path: object = ".") -> object:
        if not isinstance(path, int) and os.fspath(path) == str(directory):  # type: ignore[arg-type]
            raise PermissionError(errno.EACCES, "Permission denied", str(directory))
        return listing(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", refused)
    return listing
