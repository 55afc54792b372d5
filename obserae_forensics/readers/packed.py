"""Inputs compressed whole: gzip, bzip2, xz, zstd and LZ4 (frames, and the legacy format of
`lz4 -l`) around a capture, an IPFIX file or an nfcapd file.

Evidence often arrives compressed: `tcpdump -G ... -z gzip` compresses each capture it
rotates, Wireshark saves `.pcapng.gz`, archives hold `.pcap.zst` or `.xz`. The readers walk
a file through mmap at absolute offsets, so a compressed input is decompressed once, into an
unlinked temporary file (in TMPDIR: it needs the room of the largest input decompressed,
one file at a time, and is gone when the file is read or the run dies), and read from
there exactly as the decompressed file would be. Every offset a flow's provenance or a
problem names is an offset in the decompressed bytes (what `zcat FILE | tail -c +N+1`
begins with), and the tables are those of the decompressed file but for its name. The
problems of the compression itself (a stream cut short, a damaged one, bytes after its
end) name offsets in the compressed file, and say so.

Damage is found where the decompressor finds it, which is after it: at an invalid code,
at the end of a block (bzip2's CRC, zstd's and LZ4's blocks), at a member's checksum (gzip's
CRC-32, zstd's and LZ4's content checksums, xz's check). What was decompressed before is
read, as `zcat` and tshark give it, and the problem names the stretch the damage lies in:
from the member's start to where it was found, in compressed and in decompressed bytes
(the `source_offset`s whose records may hold damaged values). Nothing after it is read.

A file is recognised by its magic bytes, as every input is: the compression first, then
the format of what it holds.
"""

from __future__ import annotations

import bz2
import lzma
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import InputError, MalformedInput, TruncatedInput
from ..report import RunReport

__all__ = [
    "CannotUnpack",
    "opened",
    "packing_of",
    "packing_of_file",
    "packing_of_path",
    "unpacked_head",
]

READ_BYTES = 1 << 20  # compressed bytes read at a time
# compressed bytes given to a decompressor at a time: damage loses at most what one piece
# decompresses to (gzip's is salvaged up to the damage)
FEED_BYTES = 1 << 16
FIRST_FEED_BYTES = 1 << 12  # a member's first piece (the pieces double up to FEED_BYTES)
# decompressed bytes taken out at a time: a bomb (a file of zeros compresses 1000:1 and
# more) grows the spool, never the memory. zstandard's objects take no such bound, and
# are fed 1 KiB at a time instead: a block of zeros is 4 bytes for 128 KiB, so 1 KiB can
# still give 32 MiB (8 KiB gave 256 MiB at once, and the run 660 MB for a file of zeros).
OUT_BYTES = 8 << 20
ZSTD_FEED_BYTES = 1 << 10

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
# `lz4 -l`, the Linux kernel's and old tools' format: this magic, then blocks of a 4-byte
# little-endian compressed size and the block, each at most 8 MiB decompressed, no checksum,
# no end marker (the stream ends with its file, or at a size no block can have: a magic)
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
LZ4_LEGACY_BLOCK = 8 << 20
LZ4_LEGACY_BOUND = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK // 255 + 16  # LZ4_compressBound
XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b\x08"


def _is_bzip2(head: bytes) -> bool:
    # "BZh", a block size digit, then a block's or the stream end's 48-bit magic
    return (
        len(head) >= 10
        and head[:3] == b"BZh"
        and 0x31 <= head[3] <= 0x39
        and head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")
    )


SKIPPABLE_LAST = 0x184D2A5F  # zstd and LZ4 skippable frames: magic 0x184D2A50..5F


def _skippable(data: bytes, at: int) -> bool:
    return (
        len(data) - at >= 4
        and data[at] & 0xF0 == 0x50
        and (data[at + 1 : at + 4] == b"\x2a\x4d\x18")
    )


def packing_of_file(handle: IO[bytes]) -> str:
    """packing_of() for an open file, past any skippable frames it begins with (zstd and
    LZ4 share them: the first frame after says which). The handle is left at its start."""
    try:
        at = 0
        for _ in range(64):
            handle.seek(at)
            head = handle.read(10)
            if not _skippable(head, 0) or len(head) < 8:
                break
            at += 8 + int.from_bytes(head[4:8], "little")
        kind = packing_of(head)
        return kind if at == 0 or kind in ("zstd", "lz4", "lz4-legacy") else ""
    finally:
        handle.seek(0)


def packing_of_path(path: Path) -> str:
    """packing_of_file() of the file at `path`."""
    with open(path, "rb") as handle:
        return packing_of_file(handle)


def packing_of(head: bytes) -> str:
    """ "gzip", "bzip2", "xz", "zstd", "lz4" or "lz4-legacy" from a file's first bytes; ""
    if none."""
    if head[:3] == GZIP_MAGIC:
        return "gzip"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    if head[:4] == LZ4_MAGIC:
        return "lz4"
    if head[:4] == LZ4_LEGACY_MAGIC:
        return "lz4-legacy"
    if head[:6] == XZ_MAGIC:
        return "xz"
    if _is_bzip2(head):
        return "bzip2"
    return ""


class _Damage(Exception):
    """A decompressor's error, with where in the bytes fed to `_Member.pieces` it was found:
    the damage lies at or before `at` (exactly there for an invalid gzip code; the end of
    the piece being fed for the others, which do not say)."""

    def __init__(self, at: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.at = at


class _Member:
    """One member (gzip member, bzip2 stream, xz stream, zstd or LZ4 frame, LZ4 legacy
    block) being inflated, behind one interface: feed bytes, take output in bounded pieces,
    learn where it ended.

    Pieces fed start at 4 KiB and grow to FEED_BYTES: a decompressor copies what follows
    its member's end out of the last piece, and a file of a million tiny members (an empty
    gzip member is 20 bytes) made that copy a megabyte each when whole reads were fed."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.done = False
        self.used = 0  # once done: the bytes of the last view given to pieces() it took
        self._feed = ZSTD_FEED_BYTES if kind == "zstd" else FIRST_FEED_BYTES
        self._obj: Any
        if kind == "gzip":
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif kind == "bzip2":
            self._obj = bz2.BZ2Decompressor()
        elif kind == "xz":
            self._obj = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        elif kind == "zstd":
            import zstandard

            self._obj = zstandard.ZstdDecompressor().decompressobj()
        elif kind == "lz4-legacy":
            self._obj = bytearray()  # the block's bytes so far, its size field first
        else:
            import lz4.frame

            self._obj = lz4.frame.LZ4FrameDecompressor()

    def pieces(self, data: memoryview) -> Iterator[bytes]:
        """Decompressed output of `data`, a bounded piece at a time, until the member ends
        (`done`, `used`) or `data` does; raises _Damage on damage, after giving what came
        before it."""
        damage = _damage_errors()
        at = 0
        while at < len(data) and not self.done:
            piece = data[at : at + self._feed]
            try:
                if self.kind == "gzip":
                    rest = yield from self._gzip(piece)
                elif self.kind == "lz4-legacy":
                    rest = yield from self._legacy(piece)
                elif self.kind == "zstd":
                    out = self._obj.decompress(piece)
                    rest = len(self._obj.unused_data) if self._obj.eof else 0
                    self.done = self._obj.eof
                    if out:
                        yield out
                else:
                    rest = yield from self._bounded(piece)
            except _Damage as error:
                raise _Damage(at + error.at, error) from error.__cause__
            except damage as error:
                raise _Damage(at + len(piece), error) from error
            if self.done:
                self.used = at + len(piece) - rest
            at += len(piece)
            self._feed = min(self._feed * 2, FEED_BYTES) if self.kind != "zstd" else self._feed

    def _gzip(self, piece: memoryview) -> Generator[bytes, None, int]:
        obj = self._obj
        saved = obj.copy()
        given = 0
        try:
            tail: bytes | memoryview = piece
            while tail and not obj.eof:
                out = obj.decompress(tail, OUT_BYTES)
                tail = obj.unconsumed_tail
                given += len(out)
                if out:
                    yield out
        except zlib.error as error:
            # what the piece held before the damage (a CRC that does not match comes after
            # all of the member's data): the longest prefix that decompresses cleanly
            low, high = 0, len(piece)  # piece[:low] is clean, piece[:high] is not
            while high - low > 1:
                middle = (low + high) // 2
                try:
                    saved.copy().decompress(piece[:middle])
                    low = middle
                except zlib.error:
                    high = middle
            salvaged = saved.decompress(piece[:low])[given:]
            if salvaged:
                yield salvaged
            raise _Damage(low, error) from error
        self.done = obj.eof
        return len(obj.unused_data) if obj.eof else 0

    def _legacy(self, piece: memoryview) -> Generator[bytes, None, int]:
        """An LZ4 legacy block (a stream's magic before it, again where `cat` joined two,
        is passed over): gathered whole, then decompressed at once (8 MiB at most)."""
        import lz4.block

        held: bytearray = self._obj
        at = 0
        while at < len(piece):
            if len(held) < 4:
                take = min(4 - len(held), len(piece) - at)
                held += piece[at : at + take]
                at += take
                if len(held) == 4 and bytes(held) == LZ4_LEGACY_MAGIC:
                    held.clear()
                continue
            size = int.from_bytes(held[:4], "little")
            if not 0 < size <= LZ4_LEGACY_BOUND:  # no block has it: damage, never held
                raise _Damage(at, ValueError(f"an LZ4 legacy block size of {size} bytes"))
            take = min(4 + size - len(held), len(piece) - at)
            held += piece[at : at + take]
            at += take
            if len(held) == 4 + size:
                try:
                    out = lz4.block.decompress(bytes(held[4:]), uncompressed_size=LZ4_LEGACY_BLOCK)
                except lz4.block.LZ4BlockError as error:
                    raise _Damage(at, error) from error
                self.done = True
                if out:
                    yield out
                return len(piece) - at
        return 0

    def _bounded(self, piece: memoryview) -> Generator[bytes, None, int]:
        """bz2, lzma and lz4.frame: max_length and needs_input (lz4's unused_data is None
        until its frame ends)."""
        obj = self._obj
        feed: bytes | memoryview = piece
        while True:
            out = obj.decompress(feed, max_length=OUT_BYTES)
            feed = b""
            self.done = obj.eof
            if out:
                yield out
            if obj.eof:
                return len(obj.unused_data or b"")
            if obj.needs_input:
                return 0


_NONZERO = re.compile(rb"[^\x00]")


def _zeros(data: bytes, at: int) -> int:
    """Zero bytes from `at` on: padding gzip's tool ignores after a member, and xz's stream
    padding (between and after streams)."""
    found = _NONZERO.search(data, at)
    return (len(data) if found is None else found.start()) - at


_MAGIC = {"gzip": GZIP_MAGIC, "zstd": ZSTD_MAGIC, "lz4": LZ4_MAGIC, "xz": XZ_MAGIC}


def _next_member(data: bytes, at: int, kind: str, previous: str) -> str:
    """The kind of the member `data` begins at `at` ("" if none): another of the file's
    kind (pigz and `cat a.gz b.gz` write several; zstd and lz4 write a frame per input of a
    `cat`), an LZ4 frame or legacy stream where the other was (`lz4 -dc` reads `cat` of
    both), or, after a legacy block (`previous`), the next one: its size, which no magic
    has (a size cut short by the file's end is a block cut short)."""
    if kind == "bzip2":
        return kind if _is_bzip2(data[at : at + 10]) else ""
    head = data[at : at + 4]
    if kind in ("lz4", "lz4-legacy"):
        if head == LZ4_MAGIC:
            return "lz4"
        if head == LZ4_LEGACY_MAGIC:
            return "lz4-legacy"
        if previous == "lz4-legacy" and (
            len(head) < 4 or 0 < int.from_bytes(head, "little") <= LZ4_LEGACY_BOUND
        ):
            return "lz4-legacy"
        return ""
    return kind if data[at : at + len(_MAGIC[kind])] == _MAGIC[kind] else ""


def _damage_errors() -> tuple[type[BaseException], ...]:
    """What the decompressors raise on damaged data: zlib.error, bz2's OSError,
    lzma.LZMAError, zstandard.ZstdError and lz4.frame's RuntimeError (it has no class of
    its own). Only their decompress calls are guarded by these."""
    import zstandard

    return (zlib.error, OSError, lzma.LZMAError, zstandard.ZstdError, RuntimeError)


def _inflate(
    handle: IO[bytes],
    kind: str,
    write: Callable[[bytes], object],
    source: str,
    problem: Callable[[InputError, int], None],
    padding: Callable[[int], None],
    limit: int | None = None,
) -> int:
    """Write the decompressed bytes of every member to `write`, up to `limit` bytes when
    given; give what cannot be decompressed to `problem` (with its compressed bytes) and
    each run of padding between members to `padding`. The decompressed size."""
    size = os.fstat(handle.fileno()).st_size
    member: _Member | None = None  # between members, as before the first
    member_at = member_out = 0  # where the member began, compressed and decompressed
    written = 0
    data, at = b"", 0  # bytes read and not yet taken, from `at`
    consumed = 0  # the compressed offset of data[at]
    at_eof = False
    padded = 0  # the padding run being passed over
    previous = ""  # the kind of the last member (lz4 files may join frames and legacy)

    while True:
        left = len(data) - at
        if (not left or (member is None and left < 16)) and not at_eof:
            more = handle.read(READ_BYTES)  # a member's magic may straddle two reads
            at_eof = not more
            data, at = data[at:] + more, 0
            continue
        if member is None:  # between members: another, padding, or bytes that are none
            if kind in ("zstd", "lz4", "lz4-legacy") and _skippable(data, at):
                # a skippable frame: passed over by its length, never held
                length = (
                    8 + int.from_bytes(data[at + 4 : at + 8], "little") if left >= 8 else size + 1
                )
                if consumed + length > size:
                    problem(
                        TruncatedInput(
                            f"a {kind} skippable frame at compressed byte {consumed} runs past the "
                            f"end of the file ({size - consumed} bytes of it; {_before(written)})",
                            source=source,
                            offset=consumed,
                        ),
                        size - consumed,
                    )
                    return written
                if length <= left:
                    at += length
                else:
                    handle.seek(length - left, os.SEEK_CUR)
                    data, at = b"", 0
                padded += length
                consumed += length
                continue
            zeros = _zeros(data, at) if kind in ("gzip", "xz") else 0
            if zeros:
                padded += zeros
                consumed += zeros
                at += zeros
                continue
            if padded:
                padding(padded)
                padded = 0
            if not left:
                return written
            following = _next_member(data, at, kind, previous)
            if following:
                member = _Member(following)
                previous = following
                member_at, member_out = consumed, written
                continue
            rest = size - consumed
            problem(
                MalformedInput(
                    f"{rest} bytes after the end of the {kind} stream are no "
                    f"{kind} member (compressed byte {consumed} on; "
                    f"{_before(written)})",
                    source=source,
                    offset=consumed,
                    reason="bad_compression",
                ),
                rest,
            )
            return written
        if not left:
            end = "inside a block" if kind == "lz4-legacy" else "before its end marker"
            problem(
                TruncatedInput(
                    f"the {kind} stream ends {end}, at "
                    f"compressed byte {size}: the file was cut short "
                    f"({_before(written)})",
                    source=source,
                    offset=size,
                ),
                0,
            )
            return written
        pieces = member.pieces(memoryview(data)[at:])
        while True:
            try:
                out = next(pieces, None)
            except _Damage as error:
                found = min(consumed + error.at, size)
                damaged = _damaged(kind, str(error), found, member_at, member_out, written, source)
                problem(damaged, size - damaged.offset)
                return written
            if out is None:
                break
            if limit is not None and written + len(out) >= limit:
                write(out[: limit - written])
                return limit
            write(out)
            written += len(out)
        if member.done:
            consumed += member.used
            at += member.used
            member = None
        else:
            consumed += left
            at = len(data)


# zlib's words for a gzip trailer field that does not match, and the field
_GZIP_CHECKS = {"incorrect data check": "CRC-32", "incorrect length check": "length (ISIZE)"}


def _damaged(
    kind: str, error: str, found: int, member_at: int, member_out: int, written: int, source: str
) -> MalformedInput:
    """The problem of damage found at compressed byte `found`, in the member that began at
    `member_at` (decompressed byte `member_out`), after `written` bytes came out."""
    end = found
    for text, field in _GZIP_CHECKS.items():
        if kind == "gzip" and text in error:
            found -= 3  # found at the 4-byte trailer field's last byte: named at its first
            end = found + 4
            error = f"its {field} at compressed byte {found} does not match its data"
            break
    stretch = (
        f"between compressed bytes {member_at} and {end}, in the member that begins at {member_at}"
    )
    if written > member_out:
        read = (
            f"the {written - member_out} bytes it gave before (decompressed bytes "
            f"{member_out} up to {written}, the source_offsets of any record from them) "
            "are read and may hold damaged values"
        )
    else:
        read = "nothing of the member came out"
    return MalformedInput(
        f"damaged {kind} data {stretch} ({error}): {read}; nothing after it is read",
        source=source,
        offset=found,
        reason="bad_compression",
    )


def _before(written: int) -> str:
    return (
        f"the {written} bytes decompressed before it are read"
        if written
        else "nothing was decompressed before it"
    )


def unpacked_head(path: Path, kind: str, nbytes: int) -> tuple[bytes, InputError | None]:
    """The first `nbytes` decompressed bytes of a compressed file (fewer if it holds fewer
    or is damaged before them), for recognising what it holds, and the first problem of
    its compression met before them (nothing is counted)."""
    parts: list[bytes] = []
    problems: list[InputError] = []
    with open(path, "rb") as handle:
        _inflate(
            handle,
            kind,
            parts.append,
            str(path),
            lambda error, _: problems.append(error),
            lambda _: None,
            limit=nbytes,
        )
    return b"".join(parts), (problems[0] if problems else None)


class CannotUnpack(InputError):
    """A compressed input could not be decompressed for want of room (TMPDIR full): the
    file is skipped whole and counted, the run goes on."""

    reason = "unreadable"


@contextmanager
def opened(path: Path, report: RunReport | None = None) -> Iterator[IO[bytes]]:
    """The input's bytes as a real file: the file itself, or, compressed, its decompressed
    bytes in an unlinked temporary file (the problems of the compression counted on
    `report`, and the file's `compression` and `unpacked_size` noted there)."""
    with open(path, "rb") as handle:
        kind = packing_of_file(handle)
        if not kind:
            yield handle
            return
        with tempfile.TemporaryFile(prefix="obserae-unpacked-") as spool:
            try:
                written = _inflate(
                    handle,
                    kind,
                    spool.write,
                    str(path),
                    lambda error, nbytes: report.skip(error, nbytes=nbytes) if report else None,
                    lambda nbytes: (
                        report.ignore("compression_padding", str(path), nbytes) if report else None
                    ),
                )
                spool.flush()
            except OSError as exc:  # the decompressors' errors are counted inside
                raise CannotUnpack(
                    f"cannot decompress this {kind} file into "
                    f"{tempfile.gettempdir()} ({exc.strerror or exc}); set "
                    "TMPDIR to a directory with room for it",
                    source=str(path),
                    offset=0,
                ) from exc
            spool.seek(0)
            if report is not None:
                stats = report.file(str(path))
                stats.compression, stats.unpacked_size = kind, written
            yield spool
