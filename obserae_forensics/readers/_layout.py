"""Layout: a fixed-size binary header declared as a field table in wire order.

Headers of NetFlow v5/v9, IPFIX, sets and template records are written as
`(field, struct code)` tables that read like the specs (the way dpkt's `__hdr__` and
scapy's `fields_desc` do) instead of offsets computed by hand. The surprising thing is
only that a short buffer must say *where* it fell short: `unpack` raises TruncatedInput
with the file, the byte offset in that file and the capture frame.
"""

from __future__ import annotations

import struct

from ..errors import TruncatedInput


class Layout:
    """A fixed-size header, declared as (field, struct code) pairs in wire order."""

    def __init__(self, name: str, byte_order: str, fields: list[tuple[str, str]]) -> None:
        self.name = name
        self.names = [field for field, code in fields if not code.endswith("x")]  # x = padding
        self.struct = struct.Struct(byte_order + "".join(code for _, code in fields))
        self.size = self.struct.size

    def unpack(
        self, buf: bytes, at: int, *, source: str, base: int = 0, frame: int | None = None
    ) -> dict[str, int]:
        """Fields as a dict; `at` is a position in `buf`, `base` where `buf` starts in the file."""
        return dict(
            zip(
                self.names, self.values(buf, at, source=source, base=base, frame=frame), strict=True
            )
        )

    def values(
        self, buf: bytes, at: int, *, source: str, base: int = 0, frame: int | None = None
    ) -> tuple[int, ...]:
        """Fields as a tuple in declaration order: the cheap form for per-datagram loops."""
        if len(buf) - at < self.size:
            raise TruncatedInput(
                f"{self.name} needs {self.size} bytes, {max(len(buf) - at, 0)} left",
                source=source,
                offset=base + at,
                frame=frame,
            )
        return self.struct.unpack_from(buf, at)

    def pack(self, **fields: int) -> bytes:
        """Bytes of the header from named fields (tests and bench captures build datagrams)."""
        return self.struct.pack(*(fields[name] for name in self.names))
