"""Ctrl-C and SIGTERM: the run unwinds once, and never while an output is put in place.

SIGTERM (kill, timeout, systemd) used to end the process where it stood, and a run's
staging directory (hundreds of MB) stayed hidden beside its output for good; a second
signal while the first unwound interrupted the cleanup itself; and one between renaming a
run into place and removing the old one left the new output with the old half-deleted,
while the command said nothing was written. Here both signals raise `Interrupted` (a
BaseException: no `except Exception` swallows it, and neither click nor typer turns it
into an exit code of their own, which differs between their versions), a second one is
ignored, and one that comes inside `held()` waits for the block's end.

Python runs signal handlers in the main thread whatever thread the kernel chose, so
holding is done here, not with a signal mask (the writer threads would take the signal).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import ClassVar

STOPS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run was stopped by a signal; `kept`: outputs put in place whole before it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.kept: list[Path] = []


class _State:
    """The process's signal state (signals are the process's, as is this)."""

    holding = 0
    held: int | None = None
    stopping = False
    settled = False  # the command's outputs are in place: a signal no longer stops it
    ignored: ClassVar[set[int]] = set()  # signals finished() set to SIG_IGN (install takes back)


def install() -> None:
    """Handle SIGINT and SIGTERM as above, where nothing else handles them (the command
    line's entry calls this; the library alone leaves signals as they are). A command
    starts with nothing held: a signal held by a block that then failed on its own error
    (which unwound instead) stopped the process's next command at its first held() block
    (an audit)."""
    _State.settled = False
    _State.stopping = False
    _State.held = None
    for signum in STOPS:
        current = signal.getsignal(signum)
        if current in (signal.SIG_DFL, signal.default_int_handler) or (
            current == signal.SIG_IGN and signum in _State.ignored
        ):
            # (SIG_IGN of an earlier command of this process, not the host's: a second
            # main() in one process could not be interrupted, found by a review)
            signal.signal(signum, _handler)
        _State.ignored.discard(signum)


def settle() -> None:
    """The command's last output is in place: a signal from here on lets it finish (its
    summary and its exit status are the run's). One in the last lines of a run, or while
    the interpreter shut down, ended the process with 130 or 143 and no message once the
    new output had replaced an earlier one (`--force`): a script took it for a run stopped
    before it, whose earlier output is left as it was (an audit)."""
    _State.settled = True


def finished() -> None:
    """The command is over: signals are ignored while the interpreter shuts down (Python
    restores their default action as it ends, which killed the process by the signal)."""
    for signum in STOPS:
        if signal.getsignal(signum) is _handler:
            signal.signal(signum, signal.SIG_IGN)
            _State.ignored.add(signum)


def _handler(signum: int, frame: FrameType | None) -> None:
    if _State.stopping or _State.settled:
        # a second signal while the first unwinds: the cleanup goes on; or the outputs
        # are in place: the command ends as it would have
        return
    if _State.holding:
        _State.held = _State.held or signum
        return
    _State.stopping = True
    raise Interrupted(signum)


@contextmanager
def held() -> Iterator[None]:
    """A signal inside the block is raised at its end, once it has completed (not when it
    fails: its own error unwinds then)."""
    _State.holding += 1
    try:
        yield
    finally:
        _State.holding -= 1
    if not _State.holding and _State.held is not None and not _State.stopping:
        signum, _State.held = _State.held, None
        _State.stopping = True
        raise Interrupted(signum)
