"""`recombine --export-pcap` of a run over rotated captures: the templates and options data
a conversation's datagrams need are found in the run's other files, and the export is
decoded alone to check that it gives the run's records again.

Found by trying akvorado's `template` and `data` captures as one run: the export of a
conversation held its data datagram only (the template came in the other file), and did
not decode on its own (`no_template`), against what the command promised."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.errors import InputError
from obserae_forensics.readers.pcap import iter_datagrams, iter_frames
from obserae_forensics.recombine import export_pcap
from obserae_forensics.recombine.context import _datagrams as context_datagrams
from obserae_forensics.recombine.context import _pass as context_pass
from obserae_forensics.recombine.context import template_context
from obserae_forensics.report import RunReport
from tests.readers.test_ipfix import EXPORT_S, data, message, options_template, template
from tests.readers.test_pcap import pcap_bytes

# src, dst, ports, protocol, packets, octets, flowStartSeconds, flowEndSeconds
FIELDS = [
    (8, 4, 0),
    (12, 4, 0),
    (7, 2, 0),
    (11, 2, 0),
    (4, 1, 0),
    (2, 4, 0),
    (1, 4, 0),
    (150, 4, 0),
    (151, 4, 0),
]
SAMPLER = options_template(260, [(302, 4)], [(305, 4), (306, 4)])  # selector, interval, space
RATE_100 = data(260, struct.pack(">III", 1, 1, 99))  # 1 of every 100 packets
FLOW = 261


def record(client: int, packets: int = 3, octets: int = 180) -> bytes:
    return struct.pack(
        ">IIHHBIIII",
        0x0A000000 + client,
        0x0A0000FE,
        40000 + client,
        443,
        6,
        packets,
        octets,
        EXPORT_S - 20,
        EXPORT_S - 10,
    )


def capture(path: Path, first_s: int, *payloads: bytes | tuple[int, bytes]) -> Path:
    """One frame a second; a payload given as (port, payload) comes from that UDP port."""
    sent = [item if isinstance(item, tuple) else (50000, item) for item in payloads]
    frames = [
        (
            (first_s + i) * 10**9,
            bytes(
                Ether()
                / IP(src="192.0.2.9", dst="198.51.100.7")
                / UDP(sport=port, dport=4739)
                / payload
            ),
        )
        for i, (port, payload) in enumerate(sent)
    ]
    path.write_bytes(pcap_bytes(frames))
    return path


def offsets(path: Path) -> list[int]:
    return [frame.offset for frame in iter_frames(path, RunReport())]


def sessionize(tmp_path: Path, *files: Path) -> Path:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", *map(str, files), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


def session_of(run: Path, client: int) -> str:
    sessions = pq.read_table(run / "sessions.parquet").to_pylist()
    (found,) = [
        row["session_id"] for row in sessions if f"10.0.0.{client}" in (row["ip_a"], row["ip_b"])
    ]
    return str(found)


def flows_of(run: Path, session_id: str) -> list[dict[str, Any]]:
    columns = ["packets", "octets", "sampling_rate", "first_seen", "last_seen"]
    rows = pq.read_table(run / "flows.parquet").to_pylist()
    return [
        {name: row[name] for name in columns} for row in rows if row["session_id"] == session_id
    ]


def decoded_alone(tmp_path: Path, exported: Path) -> tuple[list[dict[str, Any]], str]:
    """sessionize the export on its own: the conversation's flows, and what it said."""
    out = tmp_path / "again"
    result = CliRunner().invoke(app, ["sessionize", str(exported), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return flows_of(out, session_of(out, 2)), result.output


def test_a_rotated_captures_templates_and_options_come_from_the_earlier_file(
    tmp_path: Path,
) -> None:
    first = capture(
        tmp_path / "rot0.pcap",
        EXPORT_S,
        message(SAMPLER, RATE_100, sequence=0),
        message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=1),
    )
    second = capture(
        tmp_path / "rot1.pcap", EXPORT_S + 60, message(data(FLOW, record(2)), sequence=2)
    )
    run = sessionize(tmp_path, second, first)  # replayed by first frame, whatever the order
    wanted = session_of(run, 2)
    assert [row["sampling_rate"] for row in flows_of(run, wanted)] == [100]

    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    assert exported.template_datagrams == 2  # the options data and the template
    assert (exported.checked_records, exported.differing_records) == (1, 0)
    assert [frame.data for frame in iter_frames(tmp_path / "conv.pcap", RunReport())] == [
        frame.data for path in (first, second) for frame in iter_frames(path, RunReport())
    ]
    again, said = decoded_alone(tmp_path, tmp_path / "conv.pcap")
    assert again == flows_of(run, wanted) and "no_template" not in said


def test_data_that_came_before_its_template_takes_the_later_datagram(tmp_path: Path) -> None:
    """The capture began between an exporter's data and its next template refresh: the run
    read the data when the template came, one file later."""
    first = capture(tmp_path / "a.pcap", EXPORT_S, message(data(FLOW, record(2)), sequence=5))
    second = capture(
        tmp_path / "b.pcap", EXPORT_S + 30, message(template(FLOW, FIELDS), sequence=6)
    )
    run = sessionize(tmp_path, first, second)
    wanted = session_of(run, 2)
    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    assert exported.template_datagrams == 1
    assert (exported.checked_records, exported.differing_records) == (1, 0)
    again, _ = decoded_alone(tmp_path, tmp_path / "conv.pcap")
    assert again == flows_of(run, wanted)


def test_options_sent_once_are_found_as_far_back_as_they_are(tmp_path: Path) -> None:
    """An options template sent at the exporter's start only, its data a file later, the
    flow template refreshed in every file: nothing in the conversation's own file says
    options exist; the export decoded alone read 1-in-1 where the run read 1-in-100, and
    the search goes back until it does not."""
    files = [
        capture(tmp_path / "r0.pcap", EXPORT_S, message(SAMPLER, sequence=0)),
        capture(tmp_path / "r1.pcap", EXPORT_S + 60, message(RATE_100, sequence=0)),
        capture(
            tmp_path / "r2.pcap",
            EXPORT_S + 120,
            message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=0),
        ),
        capture(
            tmp_path / "r3.pcap",
            EXPORT_S + 180,
            message(template(FLOW, FIELDS), sequence=1),
            message(data(FLOW, record(2)), sequence=1),
        ),
    ]
    run = sessionize(tmp_path, *files)
    wanted = session_of(run, 2)
    assert [row["sampling_rate"] for row in flows_of(run, wanted)] == [100]
    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    assert (exported.checked_records, exported.differing_records) == (1, 0)
    assert exported.template_datagrams == 3  # r0's options template, r1's data, r3's template
    again, _ = decoded_alone(tmp_path, tmp_path / "conv.pcap")
    assert again == flows_of(run, wanted)
    # without the records to compare, only what the passes see: r3 alone seems enough
    assert template_context(files, {3: {offsets(files[3])[1]}}) == {3: {offsets(files[3])[0]}}


def test_a_capture_gone_or_changed_since_the_run_is_said(tmp_path: Path) -> None:
    first = capture(
        tmp_path / "rot0.pcap",
        EXPORT_S,
        message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=0),
    )
    second = capture(
        tmp_path / "rot1.pcap", EXPORT_S + 60, message(data(FLOW, record(2)), sequence=1)
    )
    run = sessionize(tmp_path, first, second)
    wanted = session_of(run, 2)
    changed = bytearray(first.read_bytes())
    changed[-1] ^= 1
    first.write_bytes(bytes(changed))
    with pytest.raises(InputError, match="changed since sessionize"):
        export_pcap([run], [wanted], tmp_path / "conv.pcap")
    first.unlink()
    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    assert (exported.checked_records, exported.differing_records) == (1, 1)
    assert exported.template_datagrams == 0
    assert any("no longer found" in note and str(first) in note for note in exported.notes)
    assert any("decode otherwise from" in note for note in exported.notes)
    result = CliRunner().invoke(
        app,
        [
            "recombine",
            str(run),
            "-o",
            str(tmp_path / "rc"),
            "--session",
            wanted,
            "--export-pcap",
            str(tmp_path / "conv2.pcap"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "decoded alone, 0 of 1 records as in the run" in result.output


def test_a_template_that_never_came_ends_the_search_at_the_runs_first_file(tmp_path: Path) -> None:
    files = [
        capture(
            tmp_path / f"n{i}.pcap",
            EXPORT_S + 60 * i,
            message(data(FLOW + 1, record(i)), sequence=i),
        )
        for i in range(3)
    ]
    looked: list[Path] = []

    def reading(path: Path, transports: Any) -> Any:
        looked.append(path)
        return iter_datagrams(path, RunReport(), transports=transports)

    context = template_context(files, {2: {offsets(files[2])[0]}}, {}, reading)
    assert context == {} and looked[-3:] == files


def test_an_options_table_defined_again_with_another_layout_keeps_the_earlier_rate(
    tmp_path: Path,
) -> None:
    """The decoder keeps an exporter's sampling rate until options data declare another:
    an options id defined again as another table (here interface names) leaves the rate
    the first table declared in force. Only the latest data of each id was exported, and
    the export read 1-in-1 (logstash's vendor captures, one exporter address: 82 of 443
    records)."""
    names = options_template(260, [(10, 4)], [(82, 8)])  # ingressInterface: interfaceName
    files = [
        capture(tmp_path / "o0.pcap", EXPORT_S, message(SAMPLER, RATE_100, sequence=0)),
        capture(
            tmp_path / "o1.pcap",
            EXPORT_S + 60,
            message(names, data(260, struct.pack(">I8s", 1, b"ge-0/0/0")), sequence=0),
        ),
        capture(
            tmp_path / "o2.pcap",
            EXPORT_S + 120,
            message(template(FLOW, FIELDS), data(FLOW, record(2)), sequence=0),
        ),
    ]
    run = sessionize(tmp_path, *files)
    wanted = session_of(run, 2)
    assert [row["sampling_rate"] for row in flows_of(run, wanted)] == [100]
    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    assert (exported.checked_records, exported.differing_records) == (1, 0)
    # o0's sampler table; o1's interface names change nothing the decoder keeps, and o2
    # brings its own template
    assert exported.template_datagrams == 1


def test_each_samplers_rate_is_exported(tmp_path: Path) -> None:
    """Found by review: two samplers declared in two datagrams of one options template; only
    the latest datagram was added, and sampler 1's records read at sampler 2's rate. Each
    scope's (a sampler's, an interface's) latest record is in force."""
    with_sampler = [*FIELDS, (302, 4, 0)]
    path = capture(
        tmp_path / "s.pcap",
        EXPORT_S,
        message(SAMPLER, data(260, struct.pack(">III", 1, 1, 99)), sequence=0),
        message(SAMPLER, data(260, struct.pack(">III", 2, 1, 999)), sequence=1),
        message(
            template(FLOW, with_sampler),
            data(FLOW, record(1) + struct.pack(">I", 1), record(2) + struct.pack(">I", 2)),
            sequence=2,
        ),
    )
    assert rates_and_export(tmp_path, path, 1) == ([100], (2, 1, 0))


def test_a_port_that_defines_templates_never_takes_another_ports(tmp_path: Path) -> None:
    """Found by review: two exporting processes on one address and domain use id 261 with
    two layouts; port 50001, which defined a template of its own, sent 261 data before its
    261 template. The decoder held them for 50001's; the search took 50000's (packets and
    octets swapped in the export)."""
    swapped = [
        (8, 4, 0),
        (12, 4, 0),
        (7, 2, 0),
        (11, 2, 0),
        (4, 1, 0),
        (1, 4, 0),
        (2, 4, 0),
        (150, 4, 0),
        (151, 4, 0),
    ]
    path = capture(
        tmp_path / "p.pcap",
        EXPORT_S,
        message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=0),
        (50001, message(template(262, FIELDS), sequence=0)),
        (50001, message(data(FLOW, record(2, 180, 3)), sequence=1)),
        (50001, message(template(FLOW, swapped), sequence=2)),
    )
    run = sessionize(tmp_path, path)
    wanted = session_of(run, 2)
    assert [(row["packets"], row["octets"]) for row in flows_of(run, wanted)] == [(3, 180)]
    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    assert (exported.checked_records, exported.differing_records) == (1, 0)


def test_a_capture_the_search_read_but_took_nothing_from_is_checked_too(tmp_path: Path) -> None:
    """Found by review: what the search takes depends on every capture it read (a template
    defined again in between would be the one in force); one replaced or cut since the run
    went unnoticed, or stopped the export as 'not a capture'."""
    files = [
        capture(
            tmp_path / "c0.pcap",
            EXPORT_S,
            message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=0),
        ),
        capture(tmp_path / "c1.pcap", EXPORT_S + 60, message(data(FLOW, record(3)), sequence=1)),
        capture(tmp_path / "c2.pcap", EXPORT_S + 120, message(data(FLOW, record(2)), sequence=2)),
    ]
    run = sessionize(tmp_path, *files)
    wanted = session_of(run, 2)
    assert export_pcap([run], [wanted], tmp_path / "a.pcap").template_datagrams == 1
    files[1].write_bytes(bytes(100))
    with pytest.raises(InputError, match="changed since sessionize"):
        export_pcap([run], [wanted], tmp_path / "b.pcap")


def test_a_restarted_exporter_on_a_new_port_keeps_the_old_ports_template(tmp_path: Path) -> None:
    """Found by review (pmacct's test 112 shape): an exporter restarted on a new source port
    after a silence re-sends only its options template; the decoder reads the new port's
    data with the old port's template (a take-over), and the search, holding a port that
    defines templates to its own, added none."""
    sampler = options_template(300, [(149, 4)], [(305, 4), (306, 4)])
    files = [
        capture(
            tmp_path / "t0.pcap",
            EXPORT_S,
            message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=10),
        ),
        capture(
            tmp_path / "t1.pcap",
            EXPORT_S + 19,  # 19 s of silence: a restart
            (65156, message(sampler, sequence=5000)),
            (65156, message(data(FLOW, record(2)), sequence=5000)),
        ),
    ]
    run = sessionize(tmp_path, *files)
    wanted = session_of(run, 2)
    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    # the old port's template, and the new port's first datagram (a take-over is decided
    # there, by the silence before it)
    assert (exported.template_datagrams, exported.checked_records, exported.differing_records) == (
        2,
        1,
        0,
    )


def test_an_export_makes_no_restart_the_run_never_saw(tmp_path: Path) -> None:
    """Found by review: two processes on one address; B began while A sent every half
    second (no restart), defined an options template, sent 261 data early (held for its own
    261) and then its 261, another layout. Without A's datagrams between, the export had a
    silence before B, which the decoder took for A restarting as B: B's data read with A's
    261. The export holds B's first datagram and A's before it."""
    swapped = [*FIELDS[:5], FIELDS[6], FIELDS[5], *FIELDS[7:]]
    sampler = options_template(300, [(149, 4)], [(305, 4), (306, 4)])
    a = [
        (
            EXPORT_S * 10**9,
            message(template(FLOW, FIELDS), data(FLOW, record(2, 3, 180)), sequence=1),
        )
    ]
    a += [
        (
            (EXPORT_S + 1) * 10**9 + i * 5 * 10**8,
            message(data(FLOW, record(50 + i)), sequence=2 + i),
        )
        for i in range(6)
    ]
    b = [
        ((EXPORT_S + 4) * 10**9 + i, payload)
        for i, payload in enumerate(
            (
                message(sampler, sequence=1),
                message(data(FLOW, record(2, 4, 240)), sequence=1),
                message(template(FLOW, swapped), sequence=2),
            )
        )
    ]
    frames = sorted(
        [(ts, 1001, payload) for ts, payload in a] + [(ts, 1002, payload) for ts, payload in b]
    )
    path = tmp_path / "k.pcap"
    path.write_bytes(
        pcap_bytes(
            [
                (
                    ts,
                    bytes(
                        Ether()
                        / IP(src="192.0.2.9", dst="198.51.100.7")
                        / UDP(sport=port, dport=4739)
                        / payload
                    ),
                )
                for ts, port, payload in frames
            ]
        )
    )
    run = sessionize(tmp_path, path)
    exported = export_pcap([run], [session_of(run, 2)], tmp_path / "conv.pcap")
    assert (exported.checked_records, exported.differing_records) == (2, 0)


def test_v9_samplers_of_one_table_scoped_to_the_system(tmp_path: Path) -> None:
    """Found by review: Cisco's v9 sampler table is scoped to the System (the same bytes for
    every sampler) and names its sampler in an option field (48); keyed by its scope bytes,
    sampler 2's record replaced sampler 1's. Options records are keyed by what they change
    in the decoder (exports.options_effects: the sampler they name)."""
    from tests.readers.test_netflow_v9 import FLOW_FIELDS, flow, packet
    from tests.readers.test_netflow_v9 import data as v9_data
    from tests.readers.test_netflow_v9 import template as v9_template

    # scope System (1, 4 bytes); FLOW_SAMPLER_ID 48, its mode 49, its interval 50
    record_layout = struct.pack(">HHH" + "HH" * 4, 257, 4, 12, 1, 4, 48, 1, 49, 1, 50, 4)
    table = struct.pack(">HH", 1, 4 + len(record_layout) + 2) + record_layout + bytes(2)

    def declared(sampler: int, interval: int) -> bytes:
        return v9_data(257, struct.pack(">IBBI", 0xC6336407, sampler, 2, interval))

    def row(client: int, sampler: int) -> bytes:
        return flow(0x0A000000 + client, 0x0A0000FE, 40000 + client, 443, 6, 3, 180) + bytes(
            [sampler]
        )

    path = capture(
        tmp_path / "v9.pcap",
        EXPORT_S,
        packet(table, declared(1, 100), sequence=0),
        packet(table, declared(2, 1000), sequence=1),
        packet(
            v9_template(256, [*FLOW_FIELDS, (48, 1)]),
            v9_data(256, row(1, 1), row(2, 2)),
            sequence=2,
        ),
    )
    assert rates_and_export(tmp_path, path, 1) == ([100], (2, 1, 0))


def test_options_records_that_change_nothing_are_not_exported(tmp_path: Path) -> None:
    """Found by review: an options table scoped to a value that changes every record (a
    flow id), carrying nothing the decoder keeps: every record's datagram was 'in force',
    held and exported with one conversation (2,000 of them)."""
    counters = options_template(300, [(148, 8)], [(41, 8)])
    path = capture(
        tmp_path / "c.pcap",
        EXPORT_S,
        *[message(counters, data(300, struct.pack(">QQ", i, i)), sequence=i) for i in range(50)],
        message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=50),
    )
    run = sessionize(tmp_path, path)
    exported = export_pcap([run], [session_of(run, 1)], tmp_path / "conv.pcap")
    assert (exported.datagrams, exported.template_datagrams, exported.differing_records) == (
        1,
        0,
        0,
    )


def rates_and_export(
    tmp_path: Path, path: Path, client: int
) -> tuple[list[int], tuple[int, int, int]]:
    """`path` sessionized: the sampling rates of `client`'s flows, and the export of its
    conversation (template datagrams, records checked, records that differ)."""
    run = sessionize(tmp_path, path)
    wanted = session_of(run, client)
    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    return (
        [row["sampling_rate"] for row in flows_of(run, wanted)],
        (exported.template_datagrams, exported.checked_records, exported.differing_records),
    )


def one_record_export(
    tmp_path: Path, *payloads: bytes | tuple[int, bytes], client: int = 2
) -> tuple[int, int, int]:
    """One capture of `payloads`, sessionized; the export of `client`'s conversation:
    (template datagrams, records checked, records that differ)."""
    return rates_and_export(tmp_path, capture(tmp_path / "one.pcap", EXPORT_S, *payloads), client)[
        1
    ]


def test_every_options_record_held_for_its_template_counts(tmp_path: Path) -> None:
    """Found by review: two samplers declared before their options template (a capture
    that began mid-stream); only the last held datagram was kept, and sampler 1's record
    read at sampler 2's rate. The decoder holds them all and reads them in order."""
    with_selector = [*FIELDS, (302, 4, 0)]
    assert one_record_export(
        tmp_path,
        message(data(260, struct.pack(">III", 1, 1, 99)), sequence=1),
        message(data(260, struct.pack(">III", 2, 1, 999)), sequence=2),
        message(SAMPLER, template(FLOW, with_selector), sequence=3),
        message(data(FLOW, record(2) + struct.pack(">I", 1)), sequence=4),
    ) == (3, 1, 0)


def test_a_copy_of_an_options_datagram_is_no_newer_rate(tmp_path: Path) -> None:
    """Found by review: a late byte-for-byte copy of an options datagram, which the decoder
    drops as a duplicate, was taken for the latest rate; the export read 1-in-100 where the
    run read 1-in-10."""
    first = message(SAMPLER, data(260, struct.pack(">III", 5, 1, 99)), sequence=1)
    assert one_record_export(
        tmp_path,
        first,
        message(template(FLOW, FIELDS), sequence=2),
        message(data(260, struct.pack(">III", 5, 1, 9)), sequence=2),
        first,
        message(data(FLOW, record(2)), sequence=3),
    ) == (3, 1, 0)


def test_a_template_refresh_leaves_the_exporters_latest_where_it_was(tmp_path: Path) -> None:
    """Found by review: port A defines 261, port B another 261, A sends its own again; for a
    port that defines none the decoder still takes B's (a refresh is no new definition),
    the search took A's refresh."""
    swapped = [*FIELDS[:5], FIELDS[6], FIELDS[5], *FIELDS[7:]]
    assert one_record_export(
        tmp_path,
        (1001, message(template(FLOW, FIELDS), sequence=1)),
        (1002, message(template(FLOW, swapped), sequence=1)),
        (1001, message(template(FLOW, FIELDS), sequence=2)),
        (1003, message(data(FLOW, record(2, 3, 180)), sequence=7)),
    ) == (1, 1, 0)


def test_an_options_id_is_the_ports_that_defined_it(tmp_path: Path) -> None:
    """Found by review: port A uses 300 for options, port B for flows; A's later options data
    were taken for flows (the id was B's last) and left out."""
    assert one_record_export(
        tmp_path,
        (
            1001,
            message(
                options_template(300, [(149, 4)], [(305, 4), (306, 4)]),
                template(FLOW, FIELDS),
                sequence=1,
            ),
        ),
        (1002, message(template(300, FIELDS), data(300, record(9)), sequence=1)),
        (1001, message(data(300, struct.pack(">III", 5, 1, 99)), sequence=2)),
        (1001, message(data(FLOW, record(2)), sequence=3)),
    ) == (2, 1, 0)


def test_every_ipfix_message_of_a_datagram_is_read(tmp_path: Path) -> None:
    """Found by review: a datagram of two IPFIX messages, the second with the templates and
    the options data; the search read the first message only (the second's header as a
    set), added nothing, and the export decoded to nothing."""
    sampler = options_template(300, [(149, 4)], [(305, 4), (306, 4)])
    run = sessionize(
        tmp_path,
        capture(
            tmp_path / "m0.pcap",
            EXPORT_S,
            message(data(FLOW, record(1)), sequence=1)
            + message(
                sampler,
                template(FLOW, FIELDS),
                data(300, struct.pack(">III", 5, 1, 99)),
                sequence=2,
            ),
        ),
        capture(tmp_path / "m1.pcap", EXPORT_S + 60, message(data(FLOW, record(2)), sequence=3)),
    )
    exported = export_pcap([run], [session_of(run, 2)], tmp_path / "conv.pcap")
    assert (exported.template_datagrams, exported.checked_records, exported.differing_records) == (
        1,
        1,
        0,
    )


def test_an_exporter_that_numbers_nothing_resends_a_rate_the_decoder_reads_again(
    tmp_path: Path,
) -> None:
    """Found by review: an exporter numbering every message 0 sends 1-in-100, 1-in-10, other
    flows, then 1-in-100 again; the decoder remembers the last 4 messages of a number and
    reads the third as new (the run read 100), the search remembered all and took it for a
    copy (the export read 10)."""
    sampler = options_template(260, [(149, 4)], [(305, 4), (306, 4)])
    hundred = message(data(260, struct.pack(">III", 5, 1, 99)), sequence=0)
    assert one_record_export(
        tmp_path,
        message(sampler, template(FLOW, FIELDS), sequence=0),
        hundred,
        message(data(260, struct.pack(">III", 5, 1, 9)), sequence=0),
        *[message(data(FLOW, record(50 + i)), sequence=0) for i in range(5)],
        hundred,
        message(data(FLOW, record(2)), sequence=0),
    )[1:] == (1, 0)


def test_a_template_the_decoder_refuses_defines_nothing(tmp_path: Path) -> None:
    """Found by review: a damaged refresh of 261 (a source address of 3 bytes), which the
    decoder refuses and keeps the good one, was taken for the definition in force: the
    export carried the damaged one and read nothing."""
    damaged = [(8, 3, 0), *FIELDS[1:]]
    assert one_record_export(
        tmp_path,
        message(template(FLOW, FIELDS), sequence=1),
        message(template(FLOW, damaged), sequence=1),
        message(data(FLOW, record(2)), sequence=1),
    ) == (1, 1, 0)


def test_an_options_record_repeated_unchanged_is_exported_once(tmp_path: Path) -> None:
    """Found by review: the same 1-in-100 record sent before each of 20 data messages was
    exported 20 times; the datagram that set a value stays in force while it is repeated."""
    sampler = options_template(260, [(149, 4)], [(305, 4), (306, 4)])
    sent = [message(sampler, template(FLOW, FIELDS), sequence=0)]
    for i in range(20):
        sent += [
            message(data(260, struct.pack(">III", 5, 1, 99)), sequence=2 * i + 1),
            message(data(FLOW, record(2, 3 + i, 180)), sequence=2 * i + 2),
        ]
    run = sessionize(tmp_path, capture(tmp_path / "r.pcap", EXPORT_S, *sent))
    exported = export_pcap([run], [session_of(run, 2)], tmp_path / "conv.pcap")
    assert (exported.template_datagrams, exported.checked_records, exported.differing_records) == (
        2,
        20,
        0,
    )


def test_data_before_its_messages_own_definition_read_the_one_before(tmp_path: Path) -> None:
    """Found by review: a port defines 261 one way, then another; a datagram carries 261
    data, then 261 again (a refresh), and data of a template defined only later. The
    decoder reads the 261 data with the port's definition before that datagram (it walks
    the sets in order); the search took the datagram as bringing its own, and the export
    read the record with the first layout."""
    swapped = [*FIELDS[:5], FIELDS[6], FIELDS[5], *FIELDS[7:]]
    assert one_record_export(
        tmp_path,
        message(template(FLOW, FIELDS), sequence=1),
        message(template(FLOW, swapped), sequence=2),
        message(
            data(262, b"\0" * 8), data(FLOW, record(2, 3, 180)), template(FLOW, swapped), sequence=3
        ),
        message(template(262, [(8, 4, 0), (12, 4, 0)]), sequence=4),
    ) == (3, 1, 0)


def test_data_after_a_ports_first_template_in_its_message_wait_for_its_own(tmp_path: Path) -> None:
    """A port that defined nothing sends a template of another id, then 261 data, in one
    message: the decoder walks the sets in order, so by the data the port has templates of
    its own and holds them for its own 261, which comes next. The search took the message
    as read before its sets, with the other port's 261 (the export did not decode the
    record: held for a template it lacked). The other order reads the other port's."""
    swapped = [*FIELDS[:5], FIELDS[6], FIELDS[5], *FIELDS[7:]]
    first = message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=0)
    own = (50001, message(template(FLOW, swapped), sequence=2))
    assert one_record_export(
        tmp_path,
        first,
        (50001, message(template(262, FIELDS), data(FLOW, record(2, 180, 3)), sequence=1)),
        own,
    ) == (1, 1, 0)
    (tmp_path / "other").mkdir()
    assert one_record_export(
        tmp_path / "other",
        first,
        (50001, message(data(FLOW, record(2)), template(262, FIELDS), sequence=1)),
        own,
    ) == (1, 1, 0)


def test_a_port_seen_defining_templates_after_borrowing_is_sought_further_back(
    tmp_path: Path,
) -> None:
    """A pass that begins in the middle of a run reads data of a port that has defined
    nothing in it with another port's template; a port then seen defining templates of its
    own (here, before the pass's last wanted datagram) may have defined this one too before
    the pass began (in the first file, with another layout): the search goes further back,
    even without the records to compare. Taken, as the decoder reads them: 50001's own 261
    for client 2, and 50000's latest 261 for client 3."""
    swapped = [*FIELDS[:5], FIELDS[6], FIELDS[5], *FIELDS[7:]]
    files = [
        capture(
            tmp_path / "b0.pcap",
            EXPORT_S,
            (50001, message(template(FLOW, swapped), sequence=0)),
            message(template(FLOW, FIELDS), sequence=0),
        ),
        capture(
            tmp_path / "b1.pcap",
            EXPORT_S + 60,
            message(template(FLOW, FIELDS), sequence=1),
            (50001, message(data(FLOW, record(2, 180, 3)), sequence=1)),
            (50001, message(template(262, FIELDS), sequence=2)),
            message(data(FLOW, record(3)), sequence=2),
        ),
    ]
    at = offsets(files[1])
    # (and 50000's first datagram: whether a port took over is decided there)
    assert template_context(files, {1: {at[1], at[3]}}) == {0: set(offsets(files[0])), 1: {at[0]}}


def test_options_data_an_export_takes_keep_the_definition_they_were_read_with(
    tmp_path: Path,
) -> None:
    """Found by fuzzing the search against the decoder: options data held for 263 are read
    (1-in-1) when a later datagram defines it, after that datagram's own 260 data (1-in-100,
    read with the first datagram's 260) and before its refresh of 260. The export took the
    held data and the defining datagram, not the first one: its 260 data were then held
    in turn, and read when the refresh came, last, so that its record read 1-in-100."""
    sampler_263 = options_template(263, [(302, 4)], [(305, 4), (306, 4)])
    assert one_record_export(
        tmp_path,
        message(SAMPLER, sequence=1),
        message(data(263, struct.pack(">III", 1, 1, 0)), sequence=2),
        message(RATE_100, sampler_263, SAMPLER, sequence=3),
        message(template(FLOW, FIELDS), data(FLOW, record(2)), sequence=4),
    ) == (3, 1, 0)


def test_options_data_held_for_their_ports_own_keep_that_port_one_with_templates(
    tmp_path: Path,
) -> None:
    """Found by review: port P, which has templates of its own, sends options data before
    its own 263; the run holds them and reads them 1-in-100 with P's layout when it comes.
    The export took them (they set the rate in force) and, for another port's options
    data, that port's 263, but not the datagram that made P a port with templates: there,
    P's data read the other port's 263 at once (1-in-1)."""
    ports = 50000, 50001, 50002
    interval_space = options_template(263, [(302, 4)], [(305, 4), (306, 4)])
    space_interval = options_template(263, [(302, 4)], [(306, 4), (305, 4)])
    selected = [*FIELDS, (302, 4, 0)]
    assert one_record_export(
        tmp_path,
        (ports[0], message(template(262, FIELDS), sequence=1)),
        (ports[1], message(interval_space, sequence=1)),
        (
            ports[1],
            message(template(FLOW, selected), data(263, struct.pack(">III", 1, 1, 9)), sequence=2),
        ),
        (ports[0], message(data(263, struct.pack(">III", 1, 99, 1)), sequence=2)),
        (ports[0], message(space_interval, sequence=3)),
        (ports[2], message(data(FLOW, record(2) + struct.pack(">I", 1)), sequence=1)),
    )[1:] == (1, 0)


def test_the_search_remembers_nothing_of_datagrams_it_will_not_take(tmp_path: Path) -> None:
    """Found by review: what each datagram's options data were read with was kept for every
    datagram, taken or not (an exporter repeating its rate in each one): memory grew with
    the run's datagrams, not with what the export may take."""
    rate = data(260, struct.pack(">III", 1, 1, 99))
    path = capture(
        tmp_path / "many.pcap",
        EXPORT_S,
        message(SAMPLER, template(FLOW, FIELDS), rate, sequence=0),
        *[message(rate, data(FLOW, record(3)), sequence=i) for i in range(1, 500)],
        message(data(FLOW, record(2)), sequence=500),
    )
    at = offsets(path)
    state = context_pass([path], {0: {at[-1]}}, 0, context_datagrams, lambda index: None)
    assert len(state.kept) <= 2 and len(state.reads) <= 1


def test_a_message_with_a_reserved_first_set_exports_with_its_template(tmp_path: Path) -> None:
    """A review: the reader walks a proven exporter's message whose first set id is
    reserved (counted `reserved_set_id`), but the export's set walkers took it for no
    export: its data set needed no template, and decoded alone its record came out
    otherwise than in the run."""
    reserved = struct.pack(">HH", 7, 8) + bytes(4)
    cap = capture(
        tmp_path / "a.pcap",
        EXPORT_S,
        message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=0),
        message(reserved, data(FLOW, record(2)), sequence=1),
    )
    run = sessionize(tmp_path, cap)
    exported = export_pcap([run], [session_of(run, 2)], tmp_path / "conv.pcap")
    assert exported.template_datagrams == 1
    assert exported.checked_records == 1 and exported.differing_records == 0


def test_captures_of_one_name_in_an_evidence_tree_moved_whole(tmp_path: Path) -> None:
    """A review of `--captures`: a run over an evidence tree (day1/x.pcap, day2/x.pcap, of
    one size) copied elsewhere whole was found under no directory (only DIR/x.pcap was
    looked at), and with both day directories named, day1's x.pcap was taken for day2's and
    its SHA-256 refused the export. Under the tree's root, or under either directory named,
    each file is now found as the one the run read."""
    evidence = tmp_path / "evidence"
    for day, client in (("day1", 1), ("day2", 2)):
        (evidence / day).mkdir(parents=True)
        capture(
            evidence / day / "x.pcap",
            EXPORT_S + 60 * client,
            message(template(FLOW, FIELDS), data(FLOW, record(client)), sequence=client),
        )
    run = sessionize(tmp_path, evidence)
    share = tmp_path / "share"
    share.mkdir()
    evidence.rename(share / "evidence")
    ids = sorted(set(pq.read_table(run / "sessions.parquet").column("conversation_id").to_pylist()))
    for search in (
        [share],
        [share / "evidence"],
        [share / "evidence" / "day1", share / "evidence" / "day2"],
        [share / "evidence" / "day2", share / "evidence" / "day1"],
    ):
        exported = export_pcap([run], ids, tmp_path / "all.pcap", captures=search, force=True)
        assert (exported.records, exported.checked_records, exported.differing_records) == (
            2,
            2,
            0,
        ), search
    with pytest.raises(InputError, match="SHA-256 differs"):  # day2's is not there
        export_pcap(
            [run], ids, tmp_path / "all.pcap", captures=[share / "evidence" / "day1"], force=True
        )


def test_data_a_run_held_for_its_template_decode_at_once_after_the_run_before(
    tmp_path: Path,
) -> None:
    """The second capture began between the exporter's data and its template refresh: its
    run held the data for the template and numbered them from 65536. Exported with the
    first run's datagram, which defined the template first, they decode at once, numbered
    from 0: the same records, which the check called decoded otherwise (a review: 6 of
    22). A template the exporter defined otherwise in between still decodes otherwise."""
    first = capture(
        tmp_path / "a.pcap",
        EXPORT_S,
        message(template(FLOW, FIELDS), data(FLOW, record(1)), sequence=0),
    )
    second = capture(
        tmp_path / "b.pcap",
        EXPORT_S + 60,
        message(data(FLOW, record(2, packets=5), record(3)), sequence=1),
        message(template(FLOW, FIELDS), sequence=3),
    )
    runs = [sessionize(tmp_path / name, path) for name, path in (("0", first), ("1", second))]
    held = pq.read_table(runs[1] / "flows.parquet").column("record_index").to_pylist()
    assert sorted(held) == [65536, 65537]
    ids = [session_of(runs[0], 1), session_of(runs[1], 2)]
    exported = export_pcap(runs, ids, tmp_path / "conv.pcap")
    assert (exported.checked_records, exported.differing_records) == (2, 0)
    assert not [note for note in exported.notes if "decode otherwise" in note]

    # the exporter defined the template again with packets and octets swapped: read with
    # the first run's definition, the held data come out otherwise
    swapped = [*FIELDS[:5], FIELDS[6], FIELDS[5], *FIELDS[7:]]
    third = capture(
        tmp_path / "c.pcap",
        EXPORT_S + 60,
        message(data(FLOW, record(2, packets=5), record(3)), sequence=1),
        message(template(FLOW, swapped), sequence=3),
    )
    other = sessionize(tmp_path / "2", third)
    exported = export_pcap([runs[0], other], [ids[0], session_of(other, 2)], tmp_path / "o.pcap")
    assert (exported.checked_records, exported.differing_records) == (2, 1)
    (note,) = [note for note in exported.notes if "decode otherwise" in note]
    assert "first: record 65536 of the datagram at byte 24 of" in note
