"""Block compression of nfdump nfcapd files: none, LZO, BZ2, LZ4, ZSTD, one stream per block.

Source: nfdump `src/libnffile/nffile.c` (`Compress_Block_*`/`Uncompress_Block_*`, v1.7.8
L299-521) and the codes in `nffileV2.h` (file header byte 16). Every block payload is one
independent stream, so a bad block costs only that block.

The surprising thing: LZO and LZ4 are stored *raw* — an LZO1X stream without any header and
an LZ4 *block*, not an LZ4 frame — so neither says how large its output is. nfdump decodes into
a fixed 5 MiB buffer; we do the same with `limit` as the output bound, which also stops a
crafted stream from expanding without end. All five decoders come from wheels (lzallright,
lz4, zstandard, the standard library's bz2): no system library is needed.
"""

from __future__ import annotations

import bz2
from typing import Final

import lz4.block
import lzallright
import numpy as np
import zstandard

from ..errors import MalformedInput
from ..jit_cache import drop_stale_jit_cache, njit, read_only

NONE: Final = 0
LZO: Final = 1
BZ2: Final = 2
LZ4: Final = 3
ZSTD: Final = 4

COMPRESSION_NAMES: Final[dict[int, str]] = {
    NONE: "none",
    LZO: "lzo",
    BZ2: "bz2",
    LZ4: "lz4",
    ZSTD: "zstd",
}

# nfdump's decompression buffer (BUFFSIZE, nffile.h): no valid block expands beyond it.
MAX_BLOCK_BYTES: Final = 5 * 1024 * 1024

_lzo = lzallright.LZOCompressor()


class BadCompression(MalformedInput):
    """A block whose payload is not a valid stream of the file's compression."""

    reason = "bad_compression"


def decompress_block(
    code: int,
    payload: bytes | memoryview,
    *,
    source: str,
    offset: int,
    frame: int | None = None,
    limit: int = MAX_BLOCK_BYTES,
) -> bytes:
    """The uncompressed bytes of one block payload; raises BadCompression with the block's place."""
    if code == NONE:
        return bytes(payload)
    data = bytes(payload)
    try:
        if code == LZO:
            out = _decompress_lzo(data, limit)
        elif code == BZ2:
            out = _decompress_bz2(data, limit)
        elif code == LZ4:
            out = lz4.block.decompress(data, uncompressed_size=limit)
        elif code == ZSTD:
            out = _decompress_zstd(data, limit)
        else:
            raise BadCompression(
                f"unknown compression code {code}", source=source, offset=offset, frame=frame
            )
    except (
        lzallright.LZOError,
        lz4.block.LZ4BlockError,
        zstandard.ZstdError,
        OSError,
        ValueError,
        EOFError,
    ) as exc:
        # lzallright's error carries what it decoded before the fault beside its result
        # code: the code alone, not 80 characters of a bytes literal, names the fault
        fault = exc.args[0] if isinstance(exc, lzallright.LZOError) and exc.args else exc
        raise BadCompression(
            f"{COMPRESSION_NAMES[code]} stream does not decode: {fault!s:.80}",
            source=source,
            offset=offset,
            frame=frame,
        ) from exc
    if len(out) > limit:
        raise BadCompression(
            f"{COMPRESSION_NAMES[code]} block expands beyond {limit} bytes",
            source=source,
            offset=offset,
            frame=frame,
        )
    return bytes(out)


def compress_block(code: int, data: bytes) -> bytes:
    """One block payload compressed the way nfdump stores it (used to write test files)."""
    if code == NONE:
        return bytes(data)
    if code == LZO:
        return bytes(_lzo.compress(data))
    if code == BZ2:
        return bz2.compress(data, 9)
    if code == LZ4:
        return bytes(lz4.block.compress(data, store_size=False))
    if code == ZSTD:
        return bytes(zstandard.ZstdCompressor(level=3).compress(data))
    raise ValueError(f"unknown compression code {code}")


def _decompress_lzo(data: bytes, limit: int) -> bytes:
    # lzallright grows its buffer past the hint until the stream fits: a crafted block of
    # compressed zeros took ~10 s and ~2.3 GB before "expands beyond" (found by fuzzing),
    # so the stream's length is read from its instructions first
    length = lzo1x_length(read_only(np.frombuffer(data, dtype=np.uint8), np.uint8), limit)
    if length > limit:
        raise ValueError(f"the stream expands beyond {limit} bytes")
    # (a stream the scan cannot follow, -1, is left for lzallright to refuse)
    # a hint of the full bound decodes in one pass; a smaller one makes lzallright retry
    return bytes(_lzo.decompress(data, output_size_hint=limit))


@njit(cache=True, nogil=True)
def _long_length(
    data: np.ndarray, ip: int | np.int64, base: int
) -> tuple[int | np.int64, int | np.int64]:
    """A length written past its instruction: 255 for each zero byte, then `base` and the
    first byte that is not zero; (-1, ip) when the stream ends first."""
    length = 0
    while ip < len(data) and data[ip] == 0:
        length += 255
        ip += 1
    if ip >= len(data):
        return -1, ip
    return length + base + np.int64(data[ip]), ip + 1


@njit(cache=True, nogil=True)
def lzo1x_length(data: np.ndarray, limit: int) -> int | np.int64:  # pragma: no cover - compiled
    """The bytes an LZO1X stream decodes to, read from its instructions without writing
    them (minilzo's lzo1x_d.ch: literal runs, M1-M4 matches and their extended lengths,
    the end marker, an M4 of distance 0); `limit` + 1 as soon as it passes `limit`, -1
    when the stream runs out or does not end with the marker. The tests hold it, and its
    plain-Python run (`py_func`), to what lzallright, another decoder, makes of the same
    streams."""
    n = len(data)
    ip: int | np.int64 = 0
    op: int | np.int64 = 0
    if n == 0:
        return -1
    state = 0  # 0: a literal run's instruction next, 1: after a first literal run,
    t: int | np.int64 = 0  # 2: a match instruction `t` to read, 3: copy `t` literals then a match
    if data[0] > 17:
        t = np.int64(data[0]) - 17
        ip = 1
        if t < 4:
            state = 3
        else:
            op += t
            ip += t
            state = 1
    while True:
        if op > limit:
            return limit + 1
        if state <= 1:  # an instruction below 16 is a literal run, or after one an M1
            if ip >= n:
                return -1
            t = np.int64(data[ip])
            ip += 1
            if t >= 16:
                state = 2
                continue
            if state == 0:
                if t == 0:
                    t, ip = _long_length(data, ip, 15)
                    if t < 0:
                        return -1
                op += t + 3
                ip += t + 3
                state = 1
                continue
            ip += 1  # M1 after a literal run: 3 bytes
            op += 3
            if ip > n:
                return -1
            t = np.int64(data[ip - 2]) & 3
            state = 0 if t == 0 else 3
        elif state == 2:
            if t >= 64:  # M2
                ip += 1
                op += (t >> 5) + 1
            elif t >= 32:  # M3
                t &= 31
                if t == 0:
                    t, ip = _long_length(data, ip, 31)
                    if t < 0:
                        return -1
                ip += 2
                op += t + 2
            elif t >= 16:  # M4, or the end marker
                high = t & 8
                t &= 7
                if t == 0:
                    t, ip = _long_length(data, ip, 7)
                    if t < 0:
                        return -1
                if ip + 2 > n:
                    return -1
                distance = (np.int64(data[ip]) >> 2) + (np.int64(data[ip + 1]) << 6)
                ip += 2
                if high == 0 and distance == 0:
                    return op if ip == n else -1
                op += t + 2
            else:  # M1
                ip += 1
                op += 2
            if ip > n:
                return -1
            t = np.int64(data[ip - 2]) & 3
            state = 0 if t == 0 else 3
        else:  # copy t literals, then a match instruction
            op += t
            ip += t
            if ip >= n:
                return -1
            t = np.int64(data[ip])
            ip += 1
            state = 2


def _decompress_zstd(data: bytes, limit: int) -> bytes:
    """Every frame of the block, one after the other, as nfdump's ZSTD_decompress reads
    them; bytes after the last frame that are no frame are an error, as there (the
    first frame alone was read and anything after it passed without a word: found by
    fuzzing)."""
    if not data:
        raise ValueError("an empty block payload")
    out = bytearray()
    at = 0
    while at < len(data):
        size = _zstd_frame_size(data, at)
        frame = data[at : at + size]
        if _SKIPPABLE_MAGIC_LOW <= int.from_bytes(frame[:4], "little") <= _SKIPPABLE_MAGIC_HIGH:
            at += size  # a skippable frame: read past, as ZSTD_decompress does
            continue
        # zstandard allocates the size the frame header declares before checking any bound
        declared = zstandard.frame_content_size(frame)
        if declared > limit - len(out):
            raise ValueError(f"frame declares {declared} bytes")
        out += zstandard.ZstdDecompressor().decompress(
            frame, max_output_size=max(limit - len(out), 1)
        )
        at += size
        if len(out) > limit:
            break  # decompress_block says it expands beyond the limit
    return bytes(out)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SKIPPABLE_MAGIC_LOW, _SKIPPABLE_MAGIC_HIGH = 0x184D2A50, 0x184D2A5F  # RFC 8878 §3.1.2


def _zstd_frame_size(data: bytes, at: int) -> int:
    """The bytes of the zstd frame at `at`, walked by its header and block headers (RFC
    8878 §3.1.1); ValueError where it is no frame or is cut."""
    magic = int.from_bytes(data[at : at + 4], "little") if len(data) >= at + 4 else -1
    if _SKIPPABLE_MAGIC_LOW <= magic <= _SKIPPABLE_MAGIC_HIGH:  # magic, length, content
        if len(data) < at + 8:
            raise ValueError("zstd skippable frame header cut off")
        size = 8 + int.from_bytes(data[at + 4 : at + 8], "little")
        if at + size > len(data):
            raise ValueError("zstd skippable frame cut off")
        return size
    if data[at : at + 4] != _ZSTD_MAGIC:
        raise ValueError(f"{len(data) - at} bytes at {at} that are no zstd frame")
    if len(data) < at + 5:
        raise ValueError("zstd frame header cut off")
    descriptor = data[at + 4]
    single_segment = descriptor >> 5 & 1
    content_size_bytes = (single_segment, 2, 4, 8)[descriptor >> 6]
    position = at + 5 + (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3] + content_size_bytes
    while True:
        if len(data) < position + 3:
            raise ValueError("zstd block header cut off")
        header = int.from_bytes(data[position : position + 3], "little")
        kind, size = header >> 1 & 3, header >> 3
        if kind == 3:
            raise ValueError("zstd block of the reserved type")
        position += 3 + (1 if kind == 1 else size)
        if header & 1:  # the last block
            break
    position += 4 if descriptor >> 2 & 1 else 0  # content checksum
    if position > len(data):
        raise ValueError("zstd frame cut off")
    return position - at


def _decompress_bz2(data: bytes, limit: int) -> bytes:
    # one complete stream; trailing bytes or a cut stream are corruption, not padding
    decompressor = bz2.BZ2Decompressor()
    out = decompressor.decompress(data, max_length=limit + 1)
    if not decompressor.eof:
        raise EOFError("bzip2 stream ends early or expands beyond the block limit")
    if decompressor.unused_data:
        raise ValueError(f"{len(decompressor.unused_data)} bytes after the bzip2 stream")
    return out


drop_stale_jit_cache(globals())
