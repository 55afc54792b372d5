"""The forty-first session's audit of the small reader modules (pcap_index.py, scope.py,
background.py, _batch.py, _layout.py): the tests that kill the changes no test noticed.
The audit's changes, counts and equivalents are listed in
tests/test_small_modules_mutation_audit.py, with those of the package's other small
modules; each test names the changes it kills."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from obserae_forensics.errors import TruncatedInput
from obserae_forensics.readers import scope as scope_module
from obserae_forensics.readers._batch import flow_batch
from obserae_forensics.readers._layout import Layout
from obserae_forensics.readers.background import read_ahead
from obserae_forensics.readers.pcap_index import (
    FAST_LINKS,
    STOP_BAD_LENGTH,
    STOP_CLEAN,
    STOP_HEADER_CUT,
    STOP_RECORD_CUT,
    index_records,
)
from obserae_forensics.readers.scope import TAKEOVER_GAP_US, TemplateScope
from obserae_forensics.readers.templates import FieldSpec, Template

# -- pcap_index.py -------------------------------------------------------------------------

ETHERNET = FAST_LINKS[1]
MAX_CAPLEN = 262_144


def ipv4_udp(
    payload: bytes = b"\x00\x0a" + bytes(30),
    *,
    src: bytes = bytes([192, 0, 2, 1]),
    dst: bytes = bytes([198, 51, 100, 7]),
    ports: tuple[int, int] = (2055, 9995),
    protocol: int = 17,
    flags_offset: int = 0,
    version: int = 4,
    udp_length: int | None = None,
) -> bytes:
    """An IPv4 header without options and a UDP header, then `payload`."""
    udp = struct.pack(">HHHH", *ports, udp_length or 8 + len(payload), 0) + payload
    header = struct.pack(
        ">BBHHHBBH4s4s",
        version << 4 | 5,
        0,
        20 + len(udp),
        1,
        flags_offset,
        64,
        protocol,
        0,
        src,
        dst,
    )
    return header + udp


def ethernet(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + struct.pack(">H", ethertype) + packet


def records(*frames: bytes) -> bytes:
    """Little-endian libpcap records (no file header) of `frames`, one second apart."""
    return b"".join(
        struct.pack("<IIII", 1_600_000_000 + i, 250, len(f), len(f)) + f
        for i, f in enumerate(frames)
    )


def index(
    data: bytes,
    *,
    limit: int | None = None,
    link: tuple[int, int] = ETHERNET,
    fcs: int = 0,
    max_caplen: int = MAX_CAPLEN,
) -> tuple[list[list[int]], int, int]:
    """index_records over `data` from 0: its per-record columns as lists, where it
    stopped, and why."""
    out = index_records(
        np.frombuffer(data, dtype=np.uint8),
        0,
        len(data) if limit is None else limit,
        True,
        max_caplen,
        link[0],
        link[1],
        fcs,
        True,
    )
    return [column.tolist() for column in out[:9]], out[9], out[10]


def fast(frame: bytes, **options: object) -> bool:
    """Whether the index gives `frame`'s UDP payload itself (the fast path)."""
    columns, _, stop = index(records(frame), **options)  # type: ignore[arg-type]
    assert stop == STOP_CLEAN
    return columns[5][0] >= 0


def test_a_plain_udp_frame_gives_its_payload_source_and_ports() -> None:
    """Kills P13 (the destination address taken for the source): the exporter a fast
    path datagram is counted under; and pins the payload bounds and the ports."""
    payload = b"\x00\x0a" + bytes(range(40))
    columns, at, stop = index(records(ethernet(ipv4_udp(payload, ports=(2055, 9995)))))
    offsets, seconds, fractions, caplens, _, start, end, sources, ports = columns
    assert (offsets, seconds, fractions, stop) == ([0], [1_600_000_000], [250], STOP_CLEAN)
    assert (start[0], end[0]) == (16 + 14 + 28, 16 + 14 + 28 + len(payload))
    assert sources == [0xC0000201] and ports == [2055 << 16 | 9995]
    assert at == 16 + caplens[0]


def test_the_index_stops_at_the_window_limit_and_resumes_there() -> None:
    """Kills P01 (the limit ignored: a 64 MiB window walked the whole capture, every page
    of it resident at once) and P15 (room for one record too few: a window of empty
    records ending mid-record lost its last)."""
    frame = ethernet(ipv4_udp())
    data = records(frame, frame, frame)
    second = 16 + len(frame)
    columns, at, stop = index(data, limit=second)
    assert columns[0] == [0] and (at, stop) == (second, STOP_CLEAN)
    columns, at, stop = index(data, limit=second + 1)
    assert columns[0] == [0, second] and at == 2 * second
    empty = records(b"", b"", b"")
    columns, at, stop = index(empty, limit=17)
    assert columns[0] == [0, 16] and (at, stop) == (32, STOP_CLEAN)


def test_the_index_ends_clean_at_a_file_ending_after_a_whole_record() -> None:
    """Kills P02 (a last empty record taken for a cut header) and P04 (a last record
    ending exactly at the file's end taken for a cut one: every capture's last frame went
    the general way and the walker re-read it); the cut cases stop with their reason."""
    assert index(records(b"x", b""))[1:] == (33, STOP_CLEAN)
    frame = ethernet(ipv4_udp())
    data = records(frame)
    assert index(data)[1:] == (len(data), STOP_CLEAN)
    assert index(data[:-1])[1:] == (0, STOP_RECORD_CUT)
    assert index(data + bytes(15))[1:] == (len(data), STOP_HEADER_CUT)


def test_a_record_of_exactly_the_largest_length_is_indexed() -> None:
    """Kills P03 (`>` -> `>=` on the caplen bound): a frame of the capture's largest
    allowed length is a frame, one byte more is a bad length."""
    frame = ethernet(ipv4_udp(bytes(100)))
    assert index(records(frame), max_caplen=len(frame))[2] == STOP_CLEAN
    assert index(records(frame), max_caplen=len(frame) - 1)[2] == STOP_BAD_LENGTH


def test_the_smallest_and_exactly_fitting_udp_frames_take_the_fast_path() -> None:
    """Kills P05 (an empty UDP payload sent the general way), P08 (every header without
    options sent the general way), P10 (DF set taken for a fragment: most exporters set
    it) and P11 (a frame with no padding after the datagram sent the general way): the
    fast path is what makes a capture of millions of datagrams read in seconds."""
    assert fast(ethernet(ipv4_udp(b"")))
    assert fast(ethernet(ipv4_udp(flags_offset=0x4000)))
    assert fast(ethernet(ipv4_udp()))
    assert fast(ethernet(ipv4_udp()) + bytes(4))  # padding after it


def test_frames_that_are_not_plain_udp_over_ipv4_go_the_general_way() -> None:
    """Kills P06 (the EtherType not checked: an ARP or VLAN frame whose bytes look like
    IPv4 read as a datagram), P07 (the IP version not checked), P09 (a first fragment,
    MF set, offset 0, taken whole), P12 (a UDP length shorter than the IP payload: the
    bytes after it are counted by the general path) and P17 (another protocol read as
    UDP)."""
    packet = ipv4_udp()
    assert not fast(ethernet(packet, ethertype=0x0806))
    assert not fast(ethernet(packet, ethertype=0x8100))
    assert not fast(ethernet(ipv4_udp(version=6)))
    assert fast(packet, link=FAST_LINKS[101])
    assert not fast(ethernet(ipv4_udp(flags_offset=0x2000)))
    assert not fast(ethernet(ipv4_udp(flags_offset=0x0001)))
    assert not fast(ethernet(ipv4_udp(bytes(20), udp_length=8 + 10)))
    for protocol in (1, 6, 47, 132):
        assert not fast(ethernet(ipv4_udp(protocol=protocol)))


def test_raw_ip_with_an_ipv6_version_goes_the_general_way() -> None:
    """Kills P07 (the IP version not checked): on a raw IP link nothing else says IPv6."""
    assert not fast(ipv4_udp(version=6), link=FAST_LINKS[101])
    assert fast(ipv4_udp(), link=FAST_LINKS[228])


def test_a_datagram_reaching_into_the_fcs_goes_the_general_way() -> None:
    """Kills P14 (the FCS bytes counted as frame): a datagram whose IP length runs into
    the 4 FCS bytes is damaged, and the general path says so."""
    frame = ethernet(ipv4_udp())
    assert fast(frame + b"FCS!", fcs=4)
    assert not fast(frame[:-2] + b"FC", fcs=4)


def test_linux_cooked_captures_read_their_protocol_field() -> None:
    """Kills P16 (SLL's protocol read at byte 12, inside its address): Linux cooked
    captures (`tcpdump -i any`) all went the general way."""
    sll = struct.pack(">HHH8sH", 0, 1, 6, bytes([0, 1, 8, 0, 0, 0, 0, 0]), 0x0800)
    assert fast(sll + ipv4_udp(), link=FAST_LINKS[113])
    assert not fast(sll[:14] + b"\x86\xdd" + ipv4_udp(), link=FAST_LINKS[113])


FLOW = Template(256, (FieldSpec(8, 4), FieldSpec(12, 4)))
WIDER = Template(256, (FieldSpec(8, 4), FieldSpec(12, 4), FieldSpec(1, 4)))

# -- scope.py ------------------------------------------------------------------------------


def test_of_two_datagrams_at_one_time_the_later_one_is_heard_last() -> None:
    """Kills SC02 (`>=` -> `>`): the port that takes over after a silence inherits from
    the port heard last, and of two datagrams with one capture time that is the later in
    the capture."""
    scope: TemplateScope[str] = TemplateScope()
    scope.arrive(1, 0)
    scope.arrive(2, 0)
    scope.arrive(3, TAKEOVER_GAP_US)
    assert scope.took_over(3, 2) and not scope.took_over(3, 1)


def test_a_datagram_out_of_time_order_does_not_become_the_last_heard() -> None:
    """Kills SC03 (an earlier datagram, read later, taken as the last heard): the
    silence before a new port is measured from the stream's latest datagram."""
    scope: TemplateScope[str] = TemplateScope()
    scope.arrive(1, 100)
    scope.arrive(2, 50)
    assert scope.last_port == 1 and scope.last_arrival == 100
    scope.arrive(3, 100 + TAKEOVER_GAP_US)
    assert scope.took_over(3, 1) and not scope.took_over(3, 2)


def test_a_port_reads_the_templates_of_a_port_of_its_own_process_that_took_over() -> None:
    """Kills SC04 (`took_over` comparing with the old port itself, not its lineage): an
    exporter restarted twice, whose second socket redefined a template, and whose third
    defines others: the third's data sets read the second's definition; they were left
    without a template (no_template) though the same process defined it."""
    scope: TemplateScope[str] = TemplateScope()
    scope.arrive(1, 0)
    scope.define(1, FLOW, "first")
    scope.arrive(2, TAKEOVER_GAP_US)
    scope.define(2, WIDER, "second")
    scope.arrive(3, 2 * TAKEOVER_GAP_US)
    scope.define(3, Template(300, (FieldSpec(1, 4),)), "third")
    assert scope.took_over(3, 2) and scope.took_over(3, 1)
    assert scope.port_of(3, 256) == 2


def test_a_forgotten_port_decides_again_whether_it_took_over() -> None:
    """Kills SC07 (forget_port keeping the lineage): an SCTP association in a slot whose
    earlier one had taken over kept reading that process's templates, though it began
    while another port spoke."""
    scope: TemplateScope[str] = TemplateScope()
    scope.arrive(1, 0)
    scope.arrive(2, TAKEOVER_GAP_US)
    assert scope.took_over(2, 1)
    scope.forget_port(2)
    scope.arrive(1, TAKEOVER_GAP_US + 5)
    assert scope.arrive(2, TAKEOVER_GAP_US + 6)
    assert not scope.took_over(2, 1)


def test_the_duplicate_window_keeps_twice_its_size_before_pruning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills SC05 (`>` -> `>=`): pruning starts past twice DUPLICATE_WINDOW numbers, and
    keeps the newest DUPLICATE_WINDOW."""
    monkeypatch.setattr(scope_module, "DUPLICATE_WINDOW", 4)
    scope: TemplateScope[str] = TemplateScope()
    for sequence in range(8):
        assert not scope.duplicate(sequence, b"m")
    assert len(scope.recent) == 8 and scope.duplicate(0, b"m")
    scope.duplicate(8, b"m")
    assert sorted(scope.recent) == [5, 6, 7, 8]


def test_unnumbered_messages_are_known_by_their_sums_alone() -> None:
    """Kills SC06 (every unnumbered message under one key): a format that numbers
    nothing remembered only its last SAME_NUMBER messages, and a copy of a capture read
    after it was decoded twice."""
    scope: TemplateScope[str] = TemplateScope()
    messages = [bytes([i]) * 20 for i in range(10)]
    assert not any(scope.duplicate(None, m) for m in messages)
    assert all(scope.duplicate(None, m) for m in messages)
    assert not scope.duplicate(None, b"new")


# -- background.py -------------------------------------------------------------------------


def test_reading_ahead_by_one_still_reads_on_another_thread() -> None:
    """Kills B01 (depth 1 read inline): `--read-ahead 1` overlapped nothing."""
    threads = []

    def items() -> Iterator[int]:
        for i in range(3):
            threads.append(threading.current_thread())
            yield i

    assert list(read_ahead(items(), 1)) == [0, 1, 2]
    assert threading.current_thread() not in threads


def test_the_reader_stays_at_most_depth_items_ahead() -> None:
    """Kills B02 (an unbounded queue): the thread decoded the whole input ahead of the
    sessionizer, every batch of it in memory at once."""
    produced = []

    def items() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    ahead = read_ahead(items(), 2)
    assert next(ahead) == 0
    time.sleep(0.3)
    assert len(produced) <= 1 + 2 + 1  # taken, queued, and the one waiting to be queued
    ahead.close()


def test_a_consumer_that_stops_closes_the_readers_generator_it_still_holds() -> None:
    """Kills B03 (the generator not closed): a caller holding the reader's generator (the
    pipeline keeps it) left its files open after stopping early."""
    closed: list[threading.Thread] = []

    def reader() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.append(threading.current_thread())

    source = reader()
    ahead = read_ahead(source, 2)
    assert next(ahead) == 0
    ahead.close()
    assert closed and closed[0] is not threading.current_thread()
    del source


class _Stop(BaseException):
    """A BaseException that is not an Exception, as signals.Interrupted is."""


def test_an_exception_that_is_not_an_error_reaches_the_consumer_too() -> None:
    """Kills B06 (only Exception handed over): a BaseException raised while reading ended
    the thread and left the consumer waiting for ever."""

    def items() -> Iterator[int]:
        yield 1
        raise _Stop

    got: list[object] = []

    def consume() -> None:
        try:
            got.extend(read_ahead(items(), 2))
        except _Stop as stop:
            got.append(stop)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(5)
    assert not consumer.is_alive()
    assert got[0] == 1 and isinstance(got[1], _Stop)


# -- _batch.py -----------------------------------------------------------------------------


def test_a_batch_fills_a_missing_sampling_rate_with_one_and_says_its_source() -> None:
    """Kills BA01 (a sampling rate 0 for formats without one: counters scaled by it came
    out 0) and BA03 (the exporter written as the source file)."""
    batch = flow_batch(2, {"packets": np.array([3, 4])}, exporter="192.0.2.1", source_file="a.pcap")
    assert batch.column("sampling_rate").to_pylist() == [1, 1]
    assert batch.column("packets").to_pylist() == [3, 4]
    assert batch.column("source_file").to_pylist() == ["a.pcap", "a.pcap"]
    assert batch.column("exporter").to_pylist() == ["192.0.2.1", "192.0.2.1"]
    assert batch.column("octets").to_pylist() == [0, 0]


def test_a_batch_refuses_a_column_the_schema_does_not_have() -> None:
    """Kills BA02 (an unknown name ignored): a decoder's misspelt column was dropped
    without a word and its field read as the default."""
    with pytest.raises(KeyError, match="packet"):
        flow_batch(1, {"packet": np.array([1])}, exporter="e", source_file="f")


# -- _layout.py ----------------------------------------------------------------------------

HEADER = Layout("test header", ">", [("version", "H"), ("pad", "2x"), ("count", "I")])


def test_a_short_header_says_where_in_the_file_and_which_frame() -> None:
    """Kills L02 (the offset in the buffer, not the file), L03 (the frame dropped), L04
    (a negative count of bytes left) and L05 (the header not named): what an incident
    report cites for a cut datagram."""
    buf = bytes(10)
    with pytest.raises(TruncatedInput) as cut:
        HEADER.values(buf, 6, source="cap.pcap", base=1000, frame=12)
    assert (cut.value.source, cut.value.offset, cut.value.frame) == ("cap.pcap", 1006, 12)
    assert cut.value.message == "test header needs 8 bytes, 4 left"
    with pytest.raises(TruncatedInput, match="needs 8 bytes, 0 left"):
        HEADER.values(buf, 12, source="cap.pcap")


def test_a_header_that_exactly_fills_the_buffer_is_read() -> None:
    """L01 (`<` -> `<=`): a datagram that is only its header (a v9 message of no sets)."""
    data = HEADER.pack(version=9, count=3)
    assert data == b"\x00\x09\x00\x00\x00\x00\x00\x03"
    assert HEADER.unpack(data, 0, source="f") == {"version": 9, "count": 3}
