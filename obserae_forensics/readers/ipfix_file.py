"""IPFIX files (RFC 5655): IPFIX messages back to back, as YAF, ipfixcol2 and libfixbuf's
tools write them, with nothing around them.

A file is recognised by its first bytes (an IPFIX message header whose first set can be
one) and read message by message; each message is handed to the export decoder as a
datagram of its own, numbered as a frame (1, 2, ...) at its byte offset, arriving at its
own export time (a file keeps no capture time). A file names no exporter: its records
are the exporter `0.0.0.0`, told apart by their observation domains, as RFC 5655 §6 says
a file's domains are; the files of one run share it, so a file's templates decode the next
file's data of the same domain (a collector's rotated files need that; files of different
exporters that reuse template ids in one domain belong in separate runs). A file whose
first header is damaged is not recognised (`unknown_format`). Bytes that are not a
message header, or a length past the end of the file, are skipped to the next header that
another follows (`ipfix_file_resync`), and a message the file ends inside is `truncated`,
each with its offset.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import MalformedInput, TruncatedInput
from ..report import RunReport
from .datagrams import Datagram
from .packed import opened
from .tcp_streams import MESSAGE_HEADER, message_boundary, message_length

FILE_EXPORTER = "0.0.0.0"  # an IPFIX file names no exporter


def is_ipfix_file(head: bytes) -> bool:
    """Whether a file's first bytes are an IPFIX message header (version 10, a length of at
    least a header, a first set id that can be one, an export time)."""
    return (
        len(head) >= MESSAGE_HEADER + 4 and message_length(head, 0) > 0 and head[4:8] != b"\0\0\0\0"
    )


def first_export_us(path: Path, head: bytes | None = None) -> int | None:
    """The first message's export time: the file's place among the inputs. `head`: the
    file's first bytes decompressed, when it is compressed (packed.py)."""
    if head is None:
        with open(path, "rb") as handle:
            head = handle.read(MESSAGE_HEADER)
    if len(head) < MESSAGE_HEADER:
        return None
    return int.from_bytes(head[4:8], "big") * 1_000_000


def iter_ipfix_file(
    path: Path, report: RunReport, *, chunk_size: int = 2048
) -> Iterator[list[Datagram]]:
    """The messages of an IPFIX file as datagrams, in lists of up to `chunk_size`."""
    source = str(path)
    stats = report.file(source)
    stats.format = "ipfix"
    with opened(path, report) as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            size = len(buf)
            chunk: list[Datagram] = []
            at = number = 0
            while at < size:
                length = message_length(buf, at) if size - at >= MESSAGE_HEADER else 0
                if not length:
                    found = _next_header(buf, at)
                    skipped = (size if found is None else found) - at
                    if found is None and size - at < MESSAGE_HEADER:
                        report.skip(
                            TruncatedInput(
                                f"{skipped} bytes after the last IPFIX message, too few for a "
                                "header",
                                source=source,
                                offset=at,
                            ),
                            nbytes=skipped,
                        )
                    else:
                        report.skip(
                            MalformedInput(
                                f"{skipped} bytes that are no IPFIX message header, skipped to "
                                + (
                                    "the end of the file"
                                    if found is None
                                    else "the next header that another follows"
                                ),
                                source=source,
                                offset=at,
                                reason="ipfix_file_resync",
                            ),
                            nbytes=skipped,
                        )
                    if found is None:
                        break
                    at = found
                    continue
                if at + length > size:
                    # a length past the end: the file is cut, or the length is damaged and
                    # messages follow (review: one flipped bit dropped 182 of 210 records)
                    found = _next_header(buf, at)
                    if found is None:
                        report.skip(
                            TruncatedInput(
                                f"IPFIX message of {length} bytes, {size - at} left in the file",
                                source=source,
                                offset=at,
                            ),
                            nbytes=size - at,
                        )
                        break
                    report.skip(
                        MalformedInput(
                            f"IPFIX message claims {length} bytes, past the end of the file; "
                            f"{found - at} bytes skipped to the next header that another follows",
                            source=source,
                            offset=at,
                            reason="ipfix_file_resync",
                        ),
                        nbytes=found - at,
                    )
                    at = found
                    continue
                number += 1
                export_us = int.from_bytes(buf[at + 4 : at + 8], "big") * 1_000_000
                chunk.append(
                    Datagram(
                        bytes(buf[at : at + length]),
                        FILE_EXPORTER,
                        0,
                        0,
                        number,
                        at,
                        export_us,
                        source,
                    )
                )
                at += length
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
            stats.units += number
            if chunk:
                yield chunk


def _next_header(buf: mmap.mmap, at: int) -> int | None:
    """Offset of the next message header after `at` that another header follows (or
    that ends exactly at the end of the file), else None."""
    found, sure = message_boundary(buf, at + 1, final=True)
    return found if sure else None
