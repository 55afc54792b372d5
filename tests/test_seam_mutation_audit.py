"""The seam modules' mutation audit: schema.py (the normalized flow schema between the
readers and everything after them, and the tables' schemas), protocols.py,
readers/datagrams.py and matching/columns.py, never audited before. 61
single-point changes (S01-S32 schema.py, P01-P15 protocols.py, D01-D10 datagrams.py,
C01-C04 columns.py), each a wrong dtype, nullability or column order, a wrong constant, a
dropped branch or a swapped field; each was run against the tests of the modules that use
it (S04, S05, S26 and D04 again with the reader tests), D01 judged equivalent unrun. The
suite noticed 29; of the 32 it did not, 7 are equivalent and 25 were real gaps, killed by
the tests below (each names the changes it kills).

The changes (N: noticed by the suite; E: equivalent; G: a gap, killed here):

- S01 FLOW_SCHEMA first_seen nullable: G, test_written_tables_hold_nulls_only_where_the_
  readme_says. S02 FLOW_SCHEMA src_port/dst_port swapped: G, test_the_tables_columns_come_
  in_the_readmes_order. S03 FLOW_SCHEMA tcp_flags uint8: N (test_readme_schemas).
- S04 FLOW_NUMERIC_DTYPES tcp_flags uint8: G, test_tcp_flags_keep_all_sixteen_bits.
  S05 ... sampling_rate uint16: N (readers/test_exports_mutation_audit).
- S06 ... arrival uint64: E, flow_batch's uint64 -> int64 round trip keeps the bits, and
  nfcapd's arrivals (received ms > 0, or the slot time) are never negative, so the
  earliest (_arrivals' min) is the same.
- S07 next_hop out of FLOW_ADDRESS_COLUMNS, S08 ADDED_COLUMNS fills 1, S09/S10
  with_added_columns without its `in schema` / `not in table` test, S12 it appends at the
  end: N (query/test_run).
- S11 with_added_columns inserts at the schema's index, not min(index, width): E, a table
  of the schema or of an earlier version holds every column before reverse_tcp_flags
  (index 9), so the index never passes its width.
- S13-S15, S24 SESSIONS_SCHEMA icmp_type, closed_at, follows_session_id, close_reason
  required: N (query/test_run). S16 STATES without half_open: N (query/test_filters).
- S17 CLOSE_REASONS without evicted: G, test_every_close_reason_the_sessions_table_writes_
  can_be_asked_for. S18 CLOSE_REASONS idle/hard_timeout swapped: E, the filters test
  membership only; the order shows only in the list of an error message.
- S19 FLOWS_SCHEMA direction nullable, S21 text_address_schema makes the address columns
  nullable: G, test_written_tables_hold_nulls_only_where_the_readme_says.
- S20 FLOWS_SCHEMA session_id/direction swapped, S22 DICT_STRING int16 indices: N
  (query/test_run).
- S23 FLOW_SCHEMA reverse_packets/reverse_octets swapped, S25 SESSIONS_SCHEMA ab_flags/
  ba_flags swapped: G, test_the_tables_columns_come_in_the_readmes_order.
- S26 FLOW_NUMERIC_DTYPES source_offset uint32: G, test_a_source_offset_past_4_gib_is_kept.
- A second round, S27-S32, FLOW_NUMERIC_DTYPES narrowed: S31 (record_index uint16) N
  (readers/test_ipfix); S27 src_as, S28 input_if, S30 exporter_domain uint16, S29 packets,
  S32 source_frame uint32: G, test_every_number_column_keeps_its_widest_value.
- P01/P02 PORT_PROTOCOLS without 136 / with 58: N (sessionize/test_keys_mutation_audit).
  P03 protocol_keyword's fallback not the number, P04 58 "ICMPv6", P05 47 dropped, P15 1
  "Icmp": N (sessionize/test_rules).
- P06-P14 (89 "OSPF", 136 "UDP-Lite", 0 dropped, 44 "IPv6-frag", 41 dropped, 88 dropped,
  50 "IPSEC-ESP", 132 dropped, 112 dropped): G, test_the_protocol_column_writes_ianas_
  keywords (all) and test_rules_take_the_keywords_the_readme_names (P06, P08, P11).
- D01 transport `|` -> `+`: E, exporter_port < 2**16, the bits never overlap. D02
  transport without the association, D03 `<< 16` -> `<< 15`: G, test_each_association_
  from_a_port_is_a_transport_of_its_own. D04 session defaults to 1: N
  (readers/test_exports_mutation_audit). D05 lane defaults to 1: E, lane is read only
  when session is set (SCTP), and sctp.py always passes its stream.
- D06/D07 fresh / connection default True, D08-D10 session/lane, frame/offset,
  exporter_port/collector_port declared swapped: N (readers/test_sctp,
  recombine/test_export_context).
- C01 column_values without combine_chunks: E on the supported pyarrow,
  ChunkedArray.to_numpy(zero_copy_only=False) gives the same array, dtype and shape
  (checked: numbers, strings, bools, times, dictionaries, lists, nulls, no chunk).
  C02 zero_copy_only=True, C03 isinstance(pa.Array): N (matching/test_consolidate_rows).
  C04 np.asarray dropped: E, to_numpy returns an ndarray already.

Then readers/compression.py, audited once before (C01-C23, tests/readers/
test_nfcapd_mutation_audit.py): 25 changes it did not name (Z01-Z37, gaps in the numbers),
15 noticed by the suite: Z01/Z02 (frame header content-size / window sizes), Z05 (content
checksum skipped), Z09 (bytes after a bzip2 stream), Z12 (the last skippable magic), Z15
(LZO `length >= limit`), Z16/Z18/Z19/Z20 (LZO scan: first byte 17, zero runs of 256, M2
and M3 lengths), Z26 (last-block bit 2), Z27 (an empty zstd payload accepted), Z30 (a
skippable frame ending at the block's end taken for cut), Z33 (an M3's distance of one
byte), Z37 (a frame header wanting 4 bytes): readers/test_nfcapd_mutation_audit.py,
test_nfcapd_damage.py, test_mutation_audit.py. Of the 10 unnoticed, 7 were gaps:
- Z04 an RLE block's size taken as its length in the frame walk: G,
  test_a_zstd_block_with_rle_blocks_decodes.
- Z21 an M4 with the high bit and distance field 0 taken for the end marker, Z22 an M4's
  extended length from base 15, Z32 a first literal run's instruction one byte short: G,
  test_the_lzo_scan_follows_far_matches.
- Z24 EOFError not turned into BadCompression, Z36 a bzip2 stream's end not required, Z13
  "bz2" named otherwise in messages: G, test_a_cut_bz2_block_is_bad_compression.
- Z17 a first literal run of 4 read as one of fewer (`t < 4` -> `t <= 4`): E, only the
  instruction after it reads differently (an M1 of 2 bytes, not 3), and an M1 right after
  a literal run points 2049 or more bytes back, past the 4 written: no valid stream has
  one, lzallright refuses any that does, and the scan only bounds it.
- Z29 a skippable frame's header wanted 7 bytes, not 8: E, with 7 its size field is 3
  bytes, its frame runs past the block and is refused as cut off all the same.
- Z31 `ip >= len(data)` -> `>` in _long_length: E in its result, a long length cut at the
  stream's end reads one byte past it, but every step after a long length finds the
  stream run out and says -1 anyway.

Then readers/frames.py, audited twice before (F01-F16 and the thirty-sixth session's 25,
made to the kernel and the reference alike): 16 changes to the kernel alone, R01-R16, each a
bound on the bytes a step reads or a dropped condition, the reference left as the
specification. 9 noticed (R03 MPLS stack of 4 labels, R05 IPv6 extension `p + 8 >= n`, R06
AH length, R07-R09 ports / TCP flags / ICMP bounds, R11 GRE routing bit for key, R12 IPv4
`at + 20 >= n`, R15 IPv6 traffic class: readers/test_frames.py). Of the 7 unnoticed, 3
were gaps:
- R10 _read_all without the kept width's bound on a section's length: G,
  test_a_section_longer_than_the_kept_width_is_read_to_the_width.
- R13 IPv6 `at + 40 > n` -> `>=`: G, test_an_ipv6_header_captured_to_its_last_byte_is_read.
- R16 the IPv6 step going on into a later fragment's tunnel: G,
  test_a_later_ipv6_fragment_of_a_tunnel_is_not_walked_into.
- R01 Ethernet `at + 14 >= n`, R02 VLAN tag `at + 4 < n`, R14 GRE `at + 4 >= n`: E, a
  header ending exactly at the section's end leaves nothing after it to read (every next
  step needs 4 bytes or more), so the result is the same.
- R04 MPLS `at >= n` -> `at > n`: E in its output, at == n reads one byte past the
  section (the row's padding or the next row) as a nibble, and whatever step follows needs
  14, 20 or 40 bytes from there and stops.
Then 8 changes to the reference alone (RF02-RF09: MPLS stack of 4, the fragment's M flag
for its offset, ICMP `l4 + 2 < n`, GRE `flags & 1`, _inner without its later-fragment
stop, AH length, TCP's NS bit, IPv6 `at + 40 >= n`): 6 noticed (readers/test_frames.py,
test_decoders_mutation_audit.py); RF06 and RF09, the reference's twins of R16 and R13, only
by this file's tests of those.

One fault found (test_a_run_without_flows_writes_flows_parquet_of_the_same_schema), and
mended: flows.parquet of a run that read no flow had session_id and direction nullable,
unlike every other run's."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from obserae_forensics.matching.services import parse_protocol
from obserae_forensics.protocols import protocol_keyword
from obserae_forensics.query import filters
from obserae_forensics.readers._batch import flow_batch
from obserae_forensics.readers.datagrams import Datagram
from obserae_forensics.schema import FLOW_SCHEMA, FLOWS_SCHEMA, SESSIONS_SCHEMA

from .sessionize.scenario import rec, run

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIXTURES = ROOT / "fixtures"


def _readme_columns(start: str, end: str) -> list[str]:
    """The column names of the first Markdown table after `start` (before `end`), in the
    README's order (a row naming several columns names them in turn)."""
    text = README.read_text(encoding="utf-8")
    head = text.index(start)
    section = text[head : text.index(end, head + len(start))]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [name.strip() for row in rows for name in row.strip("|").split(" | ")[0].split(",")]


# -- schema.py -----------------------------------------------------------------------------


def test_tcp_flags_keep_all_sixteen_bits() -> None:
    """Kills S04 (FLOW_NUMERIC_DTYPES tcp_flags "uint8"): tcp_flags is the uint16 OR of
    the flags (IPFIX tcpControlBits is 16 bits: NS 0x100 and the header's reserved bits);
    flow_batch, where every reader's columns become FLOW_SCHEMA, cut them to the low byte."""
    batch = flow_batch(
        2,
        {"tcp_flags": np.array([0x1D2, 0x012]), "reverse_tcp_flags": np.array([0x110, 0x2])},
        exporter="192.0.2.1",
        source_file="x.pcap",
    )
    assert batch.column("tcp_flags").to_pylist() == [0x1D2, 0x012]
    assert batch.column("reverse_tcp_flags").to_pylist() == [0x110, 0x2]


def test_a_source_offset_past_4_gib_is_kept() -> None:
    """Kills S26 (FLOW_NUMERIC_DTYPES source_offset "uint32"): the byte offset of a frame
    in a capture of more than 4 GiB (README: uint64) found other bytes, its low 32 bits."""
    offset = 5 * 2**30 + 24
    batch = flow_batch(
        1,
        {"source_offset": np.array([offset], dtype=np.uint64)},
        exporter="192.0.2.1",
        source_file="big.pcap",
    )
    assert batch.column("source_offset").to_pylist() == [offset]


def test_every_number_column_keeps_its_widest_value() -> None:
    """Kills S27 (src_as), S28 (input_if), S30 (exporter_domain) narrowed to uint16, S29
    (packets) and S32 (source_frame) to uint32 in FLOW_NUMERIC_DTYPES: flow_batch cast
    every reader's columns to those dtypes, so a 4-byte AS number (RFC 6793), a Juniper
    ifIndex past 65535, an observation domain ID past 65535, a flow of more than 2**32
    packets (nfcapd's 64-bit counters) or the 4,294,967,296th frame of a capture was
    written as its low bits. Each integer column of FLOW_SCHEMA (typed as the README says,
    test_readme_schemas) keeps its type's largest value and one below it."""
    import pyarrow as pa

    names = [f.name for f in FLOW_SCHEMA if pa.types.is_integer(f.type) and f.type.bit_width > 8]
    widest = {name: np.iinfo(FLOW_SCHEMA.field(name).type.to_pandas_dtype()).max for name in names}
    columns = {
        name: np.array([top, top - 1], dtype=FLOW_SCHEMA.field(name).type.to_pandas_dtype())
        for name, top in widest.items()
    }
    batch = flow_batch(2, columns, exporter="192.0.2.1", source_file="x.pcap")
    for name, top in widest.items():
        assert batch.column(name).to_pylist() == [int(top), int(top) - 1], name
    assert {"src_as", "input_if", "packets", "exporter_domain", "source_frame"} <= set(names)


def test_the_tables_columns_come_in_the_readmes_order() -> None:
    """Kills S02 (src_port and dst_port swapped in FLOW_SCHEMA), S23 (reverse_packets and
    reverse_octets swapped) and S25 (ab_flags and ba_flags swapped in SESSIONS_SCHEMA):
    the columns of a reader's batch, of flows.parquet and of sessions.parquet come in the
    order the README documents them (test_readme_schemas compares names and types only);
    a table written before such a change is one Sessionizer.feed refuses."""
    flow = _readme_columns("## The flow table (`FLOW_SCHEMA`)", "\n#")
    reader = flow_batch(0, {}, exporter="192.0.2.1", source_file="x.pcap")
    assert reader.schema.names == flow
    assert FLOWS_SCHEMA.names == [*flow, "session_id", "direction"]
    sessions = _readme_columns("`sessions.parquet`, one row per session:", "\n\n`flows.parquet`")
    assert SESSIONS_SCHEMA.names == sessions


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    base = tmp_path_factory.mktemp("seam")
    capture = base / "sf_v9_varsvc.pcap"
    shutil.copy(FIXTURES / "sf_v9_varsvc.pcap", capture)
    out = base / "run"
    result = CliRunner().invoke(app, ["sessionize", str(capture), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    flows = base / "inspected.parquet"
    result = CliRunner().invoke(app, ["inspect", str(capture), "--flows", str(flows), "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_written_tables_hold_nulls_only_where_the_readme_says(run_dir: Path) -> None:
    """Kills S01 (first_seen nullable in FLOW_SCHEMA), S19 (direction nullable in
    FLOWS_SCHEMA) and S21 (text_address_schema makes the address columns nullable): the
    README's flow table marks no column "null", so every column of flows.parquet and of
    the table `inspect --flows` writes is required, as the readers' batches and the
    sessionizer's flows are; the sessions
    table's nullable columns are those the README says are null (icmp_type, icmp_code,
    closed_at and close_reason while open, follows_session_id of a session no late record
    opened)."""
    flows = pq.read_schema(run_dir / "flows.parquet")
    assert [f.name for f in flows if f.nullable] == []
    assert flows.names == FLOWS_SCHEMA.names
    inspected = pq.read_schema(run_dir.parent / "inspected.parquet")  # inspect --flows
    assert [f.name for f in inspected if f.nullable] == []
    assert inspected.names == FLOW_SCHEMA.names
    assert [f.name for f in FLOW_SCHEMA if f.nullable] == []
    reader = flow_batch(1, {}, exporter="192.0.2.1", source_file="x.pcap")
    assert [f.name for f in reader.schema if f.nullable] == []
    _, memory, _ = run([rec(0)])
    assert [f.name for f in memory.schema if f.nullable] == []
    sessions = pq.read_schema(run_dir / "sessions.parquet")
    assert [f.name for f in sessions if f.nullable] == [
        "icmp_type",
        "icmp_code",
        "closed_at",
        "close_reason",
        "follows_session_id",
    ]


def test_a_run_without_flows_writes_flows_parquet_of_the_same_schema(
    run_dir: Path, tmp_path: Path
) -> None:
    """Found by this audit: flows.parquet of a run that read no flow (an empty capture, a
    time window with nothing in it) has the table's columns, but its session_id and
    direction are optional where every other run's are required, so the two runs' tables
    are of different schemas (pyarrow refuses to concatenate them as they are)."""
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    empty = tmp_path / "empty.pcap"  # a pcap global header, no frame
    empty.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    result = CliRunner().invoke(app, ["sessionize", str(empty), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    written = pq.read_schema(tmp_path / "r" / "flows.parquet")
    assert written.names == FLOWS_SCHEMA.names
    assert written.equals(pq.read_schema(run_dir / "flows.parquet"))


def test_every_close_reason_the_sessions_table_writes_can_be_asked_for() -> None:
    """Kills S17 (CLOSE_REASONS without "evicted"): sessions.md's close reasons are the
    values of close_reason, and the queries' close_reason() takes each of them; an
    `evicted` session (closed early by the open-session cap) could not be asked for."""
    import pandas as pd

    reasons = ("fin", "rst", "rejected", "no_reply", "idle", "hard_timeout", "evicted")
    sessions_md = ROOT.parent / "shared" / "docs" / "sessions.md"
    if sessions_md.is_file():  # beside the checkout, not in an installed package
        docs = sessions_md.read_text(encoding="utf-8")
        for reason in reasons:
            assert re.search(rf"\| `{reason}` \|", docs), reason
    frame = pd.DataFrame({"state": ["closed"] * len(reasons), "close_reason": list(reasons)})
    for i, reason in enumerate(reasons):
        assert filters.close_reason(frame, reason).tolist() == [j == i for j in range(7)]


# -- protocols.py --------------------------------------------------------------------------

# IANA "Assigned Internet Protocol Numbers", the Keyword column, for the numbers the package
# names (protocol-numbers.xhtml)
IANA = {
    0: "HOPOPT",
    1: "ICMP",
    2: "IGMP",
    4: "IPv4",
    6: "TCP",
    17: "UDP",
    41: "IPv6",
    43: "IPv6-Route",
    44: "IPv6-Frag",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "IPv6-ICMP",
    88: "EIGRP",
    89: "OSPFIGP",
    103: "PIM",
    112: "VRRP",
    132: "SCTP",
    136: "UDPLite",
}


def test_the_protocol_column_writes_ianas_keywords() -> None:
    """Kills P06-P14 (89 "OSPF", 136 "UDP-Lite", 0 dropped, 44 "IPv6-frag", 41 dropped,
    88 dropped, 50 "IPSEC-ESP", 132 dropped, 112 dropped): the sessions table's `protocol`
    is IANA's keyword of the number (README), spelled as IANA spells it; sessionize's
    test_rules pins only GRE and IPv6-ICMP. Each protocol's session is written with its
    keyword."""
    records = [
        rec(0, proto=number, src="10.0.0.1", dst=f"10.0.1.{i + 1}", sport=40000, dport=443)
        for i, number in enumerate(IANA)
    ]
    sessions, _, _ = run(records)
    written = dict(
        zip(
            sessions.column("protocol_number").to_pylist(),
            sessions.column("protocol").to_pylist(),
            strict=True,
        )
    )
    assert written == IANA
    assert protocol_keyword(253) == "253"


@pytest.mark.parametrize("name", ["HOPOPT", "EIGRP", "IPv6-Frag", "ospfigp", "VRRP", "ESP"])
def test_rules_take_the_keywords_the_readme_names(name: str) -> None:
    """Kills P08, P11 (HOPOPT, EIGRP dropped) and P06 (89 "OSPF"): README, Flow Matrix:
    a rule or query may name any IANA keyword the `protocol` column writes, in any case
    (EIGRP, HOPOPT, IPv6-Frag ...); VRRP and ESP are in its own list of names too."""
    number = next(n for n, keyword in IANA.items() if keyword.lower() == name.lower())
    assert parse_protocol(name) == number
    assert parse_protocol(name.swapcase()) == number


# -- readers/datagrams.py ------------------------------------------------------------------


def test_each_association_from_a_port_is_a_transport_of_its_own() -> None:
    """Kills D02 (transport without the association) and D03 (`<< 16` -> `<< 15`): RFC
    7011 §8 scopes templates to the transport session; a UDP or TCP exporter's is its port,
    and each SCTP association from one port (sctp.py's slots) is one of its own, apart
    from the port's UDP traffic too, whatever the port (one with its high bit set
    included). The decoders and recombine key template state by it."""

    def transport(port: int, session: int) -> int:
        return Datagram(b"", "192.0.2.1", port, 4739, 1, 0, 0, "x", session).transport

    for port in (0, 4739, 40000, 65535):
        assert transport(port, 0) == port
        keys = {transport(port, session) for session in range(4)}
        assert len(keys) == 4
        assert {key & 0xFFFF for key in keys} == {port}
    assert transport(0, 1) != transport(40000, 1) != transport(40000, 0)


# -- readers/compression.py (audited once before: tests/readers/test_nfcapd_mutation_audit.py)


def test_a_zstd_block_with_rle_blocks_decodes() -> None:
    """Kills Z04 (an RLE block's size field taken as its length in the frame walk): RFC
    8878 §3.1.1.2: an RLE block holds one byte, its size field is how many times it is
    repeated. zstd writes runs of one byte (a block of zero padding) as RLE blocks, and
    the walk ran past the frame's end: the block was lost as bad_compression."""
    from obserae_forensics.readers.compression import ZSTD, compress_block, decompress_block

    for data in (bytes(200_000), bytes(range(256)) * 40 + b"a" * 300_000):
        payload = compress_block(ZSTD, data)
        assert decompress_block(ZSTD, payload, source="f", offset=0) == data


def test_the_lzo_scan_follows_far_matches() -> None:
    """Kills Z21 (an M4 with its high distance bit and a distance field of 0 taken for the
    end marker) and Z22 (an M4's extended length counted from 15, not 7): a match 32768
    bytes back is exactly such an M4 (lzo1x_d.ch: 16384 + the high bit's 16384 + the
    field; the end is an M4 of distance field 0 *without* the high bit), and a long match
    more than 16384 bytes back has an extended length. The
    scan, the expansion bound's one guard, said -1 (no bound) for the first and 8 bytes
    too many for the second, refusing a block of exactly the limit."""
    from obserae_forensics.readers.compression import (
        LZO,
        compress_block,
        decompress_block,
        lzo1x_length,
    )

    rng = np.random.default_rng(7)
    for period in (32_768, 20_000):
        half = rng.integers(0, 256, period, dtype=np.uint8).tobytes()
        data = half + half
        payload = compress_block(LZO, data)
        view = np.frombuffer(payload, dtype=np.uint8)
        assert lzo1x_length(view, 10**9) == lzo1x_length.py_func(view, 10**9) == len(data)
        assert decompress_block(LZO, payload, source="f", offset=0, limit=len(data)) == data


def test_a_cut_bz2_block_is_bad_compression() -> None:
    """Kills Z24 (EOFError left out of the errors decompress_block turns into
    BadCompression) and Z13 (COMPRESSION_NAMES' "bz2" spelled otherwise): a bz2 block cut
    short is damage counted as bad_compression and named by its compression, not an
    EOFError out of the reader."""
    from obserae_forensics.readers.compression import (
        BZ2,
        BadCompression,
        compress_block,
        decompress_block,
    )

    payload = compress_block(BZ2, bytes(range(256)) * 40)
    with pytest.raises(BadCompression, match=r"^f@0: bz2 stream does not decode"):
        decompress_block(BZ2, payload[:-10], source="f", offset=0)


# -- readers/frames.py (audited twice before: F01-F16 in tests/readers/
# test_decoders_mutation_audit.py, 25 changes in tests/readers/test_frames.py's cases)


def test_an_ipv6_header_captured_to_its_last_byte_is_read() -> None:
    """Kills R13 (`at + 40 > n` -> `>=` in the kernel's IPv6 step): frames.py reads "the
    innermost IP header whose 20 or 40 bytes were captured"; a section that ends where
    the IPv6 header ends (a sampler keeping 54 bytes, or an IPv6 packet inside IPv4 cut
    there) was no IPv6 record, or its outer header's, in the kernel alone (IPv4's twin was
    pinned already)."""
    from tests.readers.test_frames import ethernet, ipv4, ipv6, kernel, reference

    bare = ethernet(0x86DD, ipv6("2001:db8::a", "2001:db8::b", 17, b"", payload_length=512))
    assert kernel(bare) == reference(bare)
    assert kernel(bare)[:2] == ("2001:db8::a", "2001:db8::b")
    assert kernel(bare)[2][:3] == (1, 6, 17)
    inner = ipv6("2001:db8::c", "2001:db8::d", 6, b"", payload_length=20)
    tunnel = ethernet(0x0800, ipv4("192.0.2.1", "192.0.2.2", 41, inner))
    assert kernel(tunnel) == reference(tunnel)
    assert kernel(tunnel)[:2] == ("2001:db8::c", "2001:db8::d")


def test_a_later_ipv6_fragment_of_a_tunnel_is_not_walked_into() -> None:
    """Kills R16 (the kernel's IPv6 step going on into a tunnel's inner header of a later
    fragment): a later fragment's payload begins mid-packet, no inner header there, so
    the record is the outer header's, without ports (the reference stops, as the IPv4
    step does); bytes there that look like an IPv6 header of UDP gave another host pair
    and ports."""
    from tests.readers.test_frames import ethernet, extension, ipv6, kernel, reference, udp

    payload = ipv6("2001:db8::c", "2001:db8::d", 17, udp(5353, 5353))
    later = ethernet(
        0x86DD,
        ipv6(
            "2001:db8::a",
            "2001:db8::b",
            44,
            extension(41, 44, (185 << 3).to_bytes(2, "big")) + payload,
        ),
    )
    src, dst, out = kernel(later)
    assert (src, dst, out) == reference(later)
    assert (src, dst) == ("2001:db8::a", "2001:db8::b")
    assert out[:5] == (1, 6, 41, 0, 0)


def test_a_section_longer_than_the_kept_width_is_read_to_the_width() -> None:
    """Kills R10 (_read_all taking a section's declared length without the kept width's
    bound): a length-prefixed section (templates.py) may say more bytes than the columns
    kept; the kernel then read past its row into the next record's bytes (here, a TCP
    header's flags that row 0 does not hold)."""
    from obserae_forensics.addresses import address_text
    from obserae_forensics.readers.frames import read_frames
    from tests.readers.test_frames import ethernet, ipv4, reference, tcp

    width = 40  # row 0 holds Ethernet, IPv4 and the TCP ports, not its flags (byte 47)
    section = ethernet(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 22, 0)))
    sections = np.zeros((2, width), dtype=np.uint8)
    sections[0] = np.frombuffer(section[:width], dtype=np.uint8)
    sections[1] = 0xFF  # the next record's bytes
    src, dst, out = read_frames(sections, np.array([len(section) + 200, width]))
    want = reference(section[:width])
    assert (address_text(src[0].tobytes()), address_text(dst[0].tobytes())) == want[:2]
    assert tuple(int(v) for v in out[0]) == want[2]
    assert want[2][6] == 0  # no flags: they were not kept
