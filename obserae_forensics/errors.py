"""Everything this package raises on purpose.

ForensicsError
├── UsageError              bad arguments, options or settings; the CLI prints it, exit 2
│   └── LinkCycle           recombine: tables whose fragment links form a loop
└── InputError              bytes we could not decode; always says where
    ├── UnknownFormat       no reader recognises the file's magic bytes (file skipped)
    └── MalformedInput      one datagram, set or block is bad (counted, skipped)
        ├── TruncatedInput  fewer bytes than the layout or a length field promises
        └── UnknownTemplate v9/IPFIX data set whose template never arrived

A bad unit is counted and skipped, a bad file is counted and the run moves on; only
`--strict` turns the first InputError into a stop. A bug is never caught.
"""

from __future__ import annotations

from typing import Any


class ForensicsError(Exception):
    """Base of every error this package raises on purpose."""


class UsageError(ForensicsError):
    """Bad arguments, options or settings, found before any work starts."""


class LinkCycle(UsageError):
    """Fragment links in a loop: late sessions following each other, or a late session
    following a fragment that continues it (the fragment's split names it as the one
    before); no fragment of theirs leads to a root (an edited table; sessionize never
    writes one). `stuck` are their rows (a numpy array) in
    the sessions chained: the whole table's (the runs' tables one after the other), a
    bucket's when recombine's chain_sessions raises it for one; recombine/partitioned.py
    raises it again with the whole table's rows."""

    def __init__(self, stuck: Any, example: str, count: int) -> None:
        super().__init__(
            f"fragment links form a cycle (session {example} among {count}): "
            "late sessions follow each other, or a fragment continues the late session "
            "that follows it, in a loop"
        )
        self.stuck = stuck


class InputError(ForensicsError):
    """Bytes on disk that we could not decode."""

    reason = "unreadable"

    def __init__(self, message: str, *, source: str, offset: int, frame: int | None = None) -> None:
        super().__init__(message)
        self.source = source  # file path as given on the command line
        self.offset = offset  # byte offset in that file where the problem starts
        self.frame = frame  # capture frame (1-based) or nfcapd block number, if known
        self.unit = "frame"  # what `frame` numbers ("block": RunReport sets it for nfcapd)

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __str__(self) -> str:
        where = f"{self.source}@{self.offset}"
        if self.frame is not None:
            where += f" ({self.unit} {self.frame})"
        return f"{where}: {self.args[0]}"


class UnknownFormat(InputError):
    """No reader recognises the file."""

    reason = "unknown_format"


class MalformedInput(InputError):
    """One unit (datagram, set, block) is inconsistent with its own lengths or layout."""

    reason = "malformed"

    def __init__(
        self,
        message: str,
        *,
        source: str,
        offset: int,
        frame: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, source=source, offset=offset, frame=frame)
        if reason is not None:
            self.reason = reason


class TruncatedInput(MalformedInput):
    """Fewer bytes than the layout or a length field promises."""

    reason = "truncated"


class UnknownTemplate(MalformedInput):
    """A v9/IPFIX data set whose template never arrived in the input."""

    reason = "no_template"
