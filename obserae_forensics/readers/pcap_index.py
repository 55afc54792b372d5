"""Fast path of the PCAP container: index every record and its plain UDP payload in one pass.

Collector captures are mostly the same frame shape: one link header, IPv4, no options that
matter, no fragments, UDP. A numba kernel walks the libpcap record headers and, for every
frame of that shape, finds the UDP payload bounds, the IPv4 source and the ports, so the
Python loop only slices bytes. Any frame that is not plainly that shape (VLAN tags, IPv6,
fragments, odd lengths, cut-off captures) is marked for the general path in pcap.py, which
knows every case; the two paths must agree, and tests compare them on the corpus.
"""

from __future__ import annotations

import numpy as np

from ..jit_cache import drop_stale_jit_cache, njit

STOP_CLEAN = 0
STOP_HEADER_CUT = 1
STOP_BAD_LENGTH = 2
STOP_RECORD_CUT = 3

# link type -> (link header length, offset of the EtherType/protocol field or -1 for raw IP)
FAST_LINKS: dict[int, tuple[int, int]] = {
    1: (14, 12),  # Ethernet without tags
    113: (16, 14),  # Linux cooked SLL
    276: (20, 0),  # Linux cooked SLL2
    101: (0, -1),  # raw IP
    228: (0, -1),  # raw IPv4
}


@njit(cache=True, nogil=True)
def _u32(data: np.ndarray, at: int, little: bool) -> int:
    if little:
        return (
            int(data[at])
            | (int(data[at + 1]) << 8)
            | (int(data[at + 2]) << 16)
            | (int(data[at + 3]) << 24)
        )
    return (
        (int(data[at]) << 24)
        | (int(data[at + 1]) << 16)
        | (int(data[at + 2]) << 8)
        | int(data[at + 3])
    )


@njit(cache=True, nogil=True)
def _u16be(data: np.ndarray, at: int) -> int:
    return (int(data[at]) << 8) | int(data[at + 1])


@njit(cache=True, nogil=True)
def index_records(
    data: np.ndarray,
    start: int,
    limit: int,
    little: bool,
    max_caplen: int,
    link_length: int,
    type_at: int,
    fcs_bytes: int,
    fast: bool,
) -> tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    int,
    int,
]:
    """Walk libpcap records from `start`, starting none at or after `limit`.

    Returns per record: offset, seconds, fraction, caplen, origlen, payload start (-1 when
    the frame needs the general path), payload end, IPv4 source, ports (src << 16 | dst);
    then the position where the walk stopped and why (STOP_*).
    """
    size = data.shape[0]
    capacity = (min(size, limit) - start) // 16 + 1
    offsets = np.empty(capacity, np.int64)
    seconds = np.empty(capacity, np.int64)
    fractions = np.empty(capacity, np.int64)
    caplens = np.empty(capacity, np.int64)
    origlens = np.empty(capacity, np.int64)
    payload_start = np.empty(capacity, np.int64)
    payload_end = np.empty(capacity, np.int64)
    sources = np.empty(capacity, np.uint32)
    ports = np.empty(capacity, np.uint32)
    n = 0
    at = start
    stop = STOP_CLEAN
    while at < size and at < limit:
        if size - at < 16:
            stop = STOP_HEADER_CUT
            break
        caplen = _u32(data, at + 8, little)
        if caplen > max_caplen:
            stop = STOP_BAD_LENGTH
            break
        if at + 16 + caplen > size:
            stop = STOP_RECORD_CUT
            break
        offsets[n] = at
        seconds[n] = _u32(data, at, little)
        fractions[n] = _u32(data, at + 4, little)
        caplens[n] = caplen
        origlens[n] = _u32(data, at + 12, little)
        payload_start[n] = -1
        payload_end[n] = 0
        sources[n] = 0
        ports[n] = 0
        frame = at + 16
        usable = caplen - fcs_bytes
        ip = frame + link_length
        if fast and usable >= link_length + 28:
            plain = True
            if type_at >= 0 and _u16be(data, frame + type_at) != 0x0800:
                plain = False
            version_ihl = int(data[ip])
            if plain and (version_ihl >> 4) != 4:
                plain = False
            ihl = (version_ihl & 0x0F) * 4
            if plain and (ihl < 20 or usable < link_length + ihl + 8):
                plain = False
            if plain:
                total = _u16be(data, ip + 2)
                flags_offset = _u16be(data, ip + 6)
                if (
                    data[ip + 9] != 17
                    or flags_offset & 0x3FFF != 0
                    or total < ihl + 8
                    or link_length + total > usable
                ):
                    plain = False
                else:
                    udp = ip + ihl
                    udp_length = _u16be(data, udp + 4)
                    # a UDP length other than the IP payload's goes the general way,
                    # which counts bytes after the datagram that are not padding
                    if udp_length < 8 or udp_length != total - ihl:
                        plain = False
                    else:
                        payload_start[n] = udp + 8
                        payload_end[n] = udp + udp_length
                        sources[n] = np.uint32(_u16be(data, ip + 12) << 16 | _u16be(data, ip + 14))
                        ports[n] = np.uint32((_u16be(data, udp) << 16) | _u16be(data, udp + 2))
        n += 1
        at += 16 + caplen
    # copies: the arrays are sized for a window of empty records (~4 M entries for 64 MiB),
    # and slices would keep every one of them alive while the window's frames are replayed
    return (
        offsets[:n].copy(),
        seconds[:n].copy(),
        fractions[:n].copy(),
        caplens[:n].copy(),
        origlens[:n].copy(),
        payload_start[:n].copy(),
        payload_end[:n].copy(),
        sources[:n].copy(),
        ports[:n].copy(),
        at,
        stop,
    )


# numba's cache ignores the modules this one compiles in (jit_cache.py): last, so that
# every name is bound
drop_stale_jit_cache(globals())
