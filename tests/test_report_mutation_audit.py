"""The run report's behaviour no test pinned, found by a mutation audit of report.py (the
thirty-sixth session's: 45 small changes, 27 of which the accounting and reader tests did
not notice; 24 were real gaps, killed here, and 3 not: a kept example's place never equals
a later one's, which carries a later count; frames are numbered from 1, so a problem of no
frame sorts first as -1 or 0 alike; the number of examples per reason, a setting the tests
use by name). Most are in the end-of-run line a responder reads first: which counts it
gives, in what order, and where it sends them for the rest; the others in an exporter's
first and last export times and clock offsets. Each test fails with its change applied
and names it. The thirty-fourth session's audit of the same file is
tests/test_accounting_audit.py."""

from __future__ import annotations

from obserae_forensics.report import EXAMPLES_PER_REASON, ExporterStats, RunReport
from tests.test_accounting_audit import Bad, Other


def test_the_summary_counts_the_files_read_and_names_the_others() -> None:
    """R01: every path met counted as a file read, the ones not read too."""
    report = RunReport()
    report.file("a.pcap").format = "pcap"
    report.file("notes.txt")
    report.records = 5
    assert report.summary() == (
        "5 flow records read from 1 file(s); 1 other path(s) not read (manifest.json: not_read)"
    )
    assert report.summary(manifest=False).endswith("1 other path(s) not read (notes.txt)")


def test_the_summary_says_what_the_time_window_left_out() -> None:
    """R03 (the records outside --from/--to not said) and R26 (nor counted on their file,
    which the manifest cites)."""
    report = RunReport()
    report.file("a.pcap").format = "pcap"
    report.outside("a.pcap", 7)
    assert "; 7 outside --from/--to" in report.summary()
    assert report.files["a.pcap"].outside_window == 7
    assert report.files["a.pcap"].read_counts()["outside_window"] == 7


def test_the_summary_gives_reasons_with_units_sorted_by_name() -> None:
    """R04 (a reason counted down to 0 shown as "0 ...") and R05 (reasons in the order they
    were met, which depends on the inputs' order)."""
    report = RunReport()
    report.skip(Other("o", source="a", offset=0, frame=None))
    report.skip(Bad("m", source="a", offset=1, frame=None))
    report.skipped["truncated"] += 0
    assert "; skipped: 1 bad_thing, 1 other_thing" in report.summary()
    assert "truncated" not in report.summary()


def test_the_summary_names_copies_only_where_no_manifest_does() -> None:
    """R08: the copies were listed in the line even when the manifest lists them."""
    report = RunReport()
    report.file("a.nfcapd").format = "nfcapd"
    report.file("b.nfcapd").copy_of = "a.nfcapd"
    assert report.summary().endswith(
        "; 1 nfcapd file(s) not read, byte for byte copies of others read (duplicate_file, "
        "manifest.json: not_read)"
    )
    assert report.summary(manifest=False).endswith(
        "(duplicate_file: b.nfcapd (a copy of a.nfcapd))"
    )


def test_the_summary_counts_records_datagrams_and_names_not_things() -> None:
    """R10 (the records before sampling counted as exporters), R11 (the duplicate datagrams
    dropped not said) and R12 (the other names of files given twice counted as files)."""
    report = RunReport()
    report.exporter("192.0.2.1", 0).records_before_sampling = 40
    report.exporter("192.0.2.1", 1).records_before_sampling = 2
    report.file("a.pcap").duplicate_datagrams = 3
    report.file("a.pcap").also_named = ["copy1.pcap", "copy2.pcap"]
    line = report.summary()
    assert "; 42 records of 2 exporter(s) came before their exporter declared" in line
    assert "; 3 duplicate datagram(s) dropped" in line
    assert "; 2 other name(s) of files given twice" in line


def test_repairs_count_every_record_put_right() -> None:
    """R17: a repair of several records counted as one."""
    report = RunReport()
    report.repair(Bad("m", source="a", offset=0, frame=None), count=3)
    assert report.repaired == {"bad_thing": 3}
    assert "; kept, a problem noted (put right where it can be): 3 bad_thing" in report.summary()


def test_record_examples_fill_a_reason_up_to_the_cap_and_no_further() -> None:
    """R20: a file's records with a problem added one example past EXAMPLES_PER_REASON."""
    report = RunReport()
    for offset in range(EXAMPLES_PER_REASON - 1):
        report.skip(Bad("unit", source="a", offset=offset, frame=None))
    for variant in ("x", "y"):
        report.file_records(
            Bad("records", source="b", offset=0, frame=None), 1, str, variant=variant
        )
    assert len(report.examples) == EXAMPLES_PER_REASON


def test_record_examples_are_ordered_by_offset_before_frame() -> None:
    """R21: ordered by frame first, a later record in an earlier-numbered unit came first."""
    report = RunReport()
    report.file_records(Bad("m", source="a", offset=8, frame=2), 1, str, variant="x")
    report.file_records(Bad("m", source="a", offset=4, frame=9), 1, str, variant="y")
    assert [p.offset for p in report.examples] == [4, 8]


def test_the_manifest_cites_a_compressed_files_decompressed_size() -> None:
    """R30: offsets count in the decompressed bytes; their size was left out."""
    report = RunReport()
    stats = report.file("a.pcap.gz")
    stats.format, stats.compression, stats.unpacked_size = "pcap", "gzip", 4096
    cited = report.as_dict()["files"]["a.pcap.gz"]
    assert (cited["compression"], cited["unpacked_size"]) == ("gzip", 4096)


def test_problems_of_files_not_read_come_after_those_of_files_read() -> None:
    """R32: a path that was not read (named in no reading order) came first."""
    report = RunReport()
    report.order_files(["b.pcap"])
    report.skip(Bad("unread", source="a.txt", offset=0, frame=None))
    report.skip(Bad("read", source="b.pcap", offset=100, frame=None))
    assert [p.source for p in report.examples] == ["b.pcap", "a.txt"]


def test_an_exporters_export_times_and_clock_offsets_are_their_extremes() -> None:
    """R33 and R34 (the first and last export times those seen first and last, not the
    earliest and latest), R35 (the clock offset taken as capture minus export time), R36
    (its maximum never raised) and R37 (the lowest export version claimed)."""
    stats = ExporterStats("192.0.2.1", 0)
    stats.see_export(2_000, 4_000)  # 2 ms behind the capture
    stats.see_export(1_000, 0)  # 1 ms ahead
    stats.see_export(1_500, None)
    assert (stats.first_export_us, stats.last_export_us) == (1_000, 2_000)
    assert (stats.clock_offset_min_us, stats.clock_offset_max_us) == (-2_000, 1_000)
    stats.versions |= {5, 9}
    assert stats.version == 9


def test_the_summary_lists_five_paths_and_counts_the_rest() -> None:
    """R41 (six listed) and R42 (the rest counted as all of them), where no manifest
    lists them (inspect)."""
    report = RunReport()
    for name in "abcdefg":
        report.file(f"{name}.txt")
    assert report.summary(manifest=False).endswith(
        "7 other path(s) not read (a.txt, b.txt, c.txt, d.txt, e.txt, ... 2 more)"
    )


def test_other_names_and_hidden_paths_are_cited_as_the_manifest_can_hold_them() -> None:
    """R39 (a file's other names left out of its counts) and R45 (a hidden entry's name
    that is not UTF-8 kept as lone surrogates, which no JSON writer takes)."""
    report = RunReport()
    report.file("a.pcap").also_named = ["copy.pcap"]
    assert report.files["a.pcap"].read_counts()["also_named"] == ["copy.pcap"]
    report.ignore_hidden("case/.h\udcff")
    assert report.hidden == ["case/.h\\xff"]
    assert "; 1 hidden entry of the directories left out" in report.summary()
