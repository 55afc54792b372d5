"""The accounting no test pinned, found by a mutation audit of report.py, the manifest of
pipeline.py, tables/ and the CLI's exit codes (the thirty-fourth session's: 22 small
changes, 13 of which no test noticed): skipped bytes and per-file counts, the examples'
cap and order, the conservation check's flow rows and bytes, an input that grew under its
mtime, SHA-256 past the first MiB, an empty table's row group. Each test fails with its
change applied."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.errors import InputError
from obserae_forensics.report import EXAMPLES_PER_REASON, RunReport
from obserae_forensics.tables.parquet import write_atomically, write_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CLEAN = FIXTURES / "sf_v9_varsvc.pcap"
DAMAGED = FIXTURES / "damaged" / "v9_template_lengths_damaged.pcap"

runner = CliRunner()


class Bad(InputError):
    reason = "bad_thing"


class Other(InputError):
    reason = "other_thing"


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, str]:
    out = tmp_path_factory.mktemp("run") / "out"
    result = runner.invoke(app, ["sessionize", str(DAMAGED), str(CLEAN), "-o", str(out), "-q"])
    return result.exit_code, json.loads((out / "manifest.json").read_text()), result.stderr


def test_manifest_cites_each_input_with_its_size_hash_and_skips(damaged_run) -> None:
    code, manifest, _ = damaged_run
    assert code == 0
    by_name = {Path(i["path"]).name: i for i in manifest["inputs"]}
    for path in (DAMAGED, CLEAN):
        cited = by_name[path.name]
        assert cited["size"] == path.stat().st_size
        assert cited["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert by_name[DAMAGED.name]["records"] == 0
    assert by_name[DAMAGED.name]["skipped"] == {"bad_template": 1, "no_template": 1}
    assert by_name[CLEAN.name]["records"] == 72
    assert by_name[CLEAN.name]["skipped"] == {}
    assert manifest["not_read"] == []


def test_manifest_counts_skipped_units_and_bytes_by_reason(damaged_run) -> None:
    _, manifest, _ = damaged_run
    counts = manifest["counts"]
    assert counts["records_read"] == 72
    assert counts["skipped"] == {"bad_template": 1, "no_template": 1}
    assert counts["skipped_bytes"] == {"bad_template": 64, "no_template": 164}
    assert counts["sessions"] == 38 and counts["flows"] == 72
    per_file = {}
    for cited in manifest["inputs"]:
        for reason, n in cited["skipped"].items():
            per_file[reason] = per_file.get(reason, 0) + n
    assert per_file == counts["skipped"]


def test_manifest_conservation_block_is_whole(damaged_run) -> None:
    _, manifest, _ = damaged_run
    assert manifest["conservation"] == {
        "ok": True,
        "records_in": 72,
        "records_in_sessions": 72,
        "flow_rows": 72,
        "packets_in": 259,
        "packets_in_sessions": 259,
        "bytes_in": 45779,
        "bytes_in_sessions": 45779,
    }


def test_manifest_problems_keep_their_offset_and_frame(damaged_run) -> None:
    _, manifest, stderr = damaged_run
    problems = manifest["problems"]
    assert len(problems) == 2
    for problem in problems:
        assert problem.startswith(f"{DAMAGED}@24 (frame 1): ")
    assert "has length 32768" in problems[0]
    assert "the template never arrived" in problems[1]
    assert "skipped: 1 bad_template, 1 no_template" in stderr
    # what to do about data whose template never came: a review sessionized a slice of a
    # longer capture alone, read nothing, and the summary gave no way on
    assert "give the captures before a slice in the same run" in stderr


@pytest.mark.parametrize("command", ["inspect", "sessionize"])
def test_strict_exit_codes(tmp_path: Path, command: str) -> None:
    def run(*inputs: Path, name: str) -> int:
        extra = ["-o", str(tmp_path / name)] if command == "sessionize" else []
        args = [command, *map(str, inputs), *extra, "--strict", "-q"]
        return runner.invoke(app, args).exit_code

    assert run(CLEAN, name="clean") == 0  # --strict with nothing skipped: exit 0
    assert run(DAMAGED, CLEAN, name="damaged") == 1


def test_skip_counts_units_and_bytes_by_reason_and_file() -> None:
    report = RunReport()
    report.skip(Bad("m", source="a", offset=10, frame=2), nbytes=100, count=3)
    report.skip(Bad("m", source="b", offset=5, frame=None), nbytes=7)
    report.skip(Other("o", source="a", offset=1, frame=1), nbytes=0)
    assert report.skipped == {"bad_thing": 4, "other_thing": 1}
    assert report.skipped_bytes == {"bad_thing": 107, "other_thing": 0}
    assert report.reason_counts()["skipped_bytes"] == {"bad_thing": 107, "other_thing": 0}
    assert report.files["a"].skipped == {"bad_thing": 3, "other_thing": 1}
    assert report.files["b"].skipped == {"bad_thing": 1}
    assert report.skipped_problems() == 5
    assert [str(p) for p in report.examples] == ["a@1 (frame 1): o", "a@10 (frame 2): m", "b@5: m"]


def test_strict_skip_raises_and_counts_nothing() -> None:
    report = RunReport(strict=True)
    with pytest.raises(Bad):
        report.skip(Bad("m", source="a", offset=0, frame=None), nbytes=9)
    assert not report.skipped and not report.skipped_bytes


def test_examples_keep_the_first_of_each_reason_in_input_order() -> None:
    report = RunReport()
    report.order_files(["first", "second"])
    for offset in range(EXAMPLES_PER_REASON + 5, 0, -1):  # met last to first
        report.skip(Bad("m", source="second", offset=offset, frame=None))
    report.skip(Bad("m", source="first", offset=999, frame=None))
    kept = report.examples
    assert len(kept) == EXAMPLES_PER_REASON
    assert str(kept[0]) == "first@999: m"
    assert [p.offset for p in kept[1:]] == list(range(1, EXAMPLES_PER_REASON))
    assert report.skipped["bad_thing"] == EXAMPLES_PER_REASON + 6


def test_file_records_counts_batches_in_one_example() -> None:
    report = RunReport()
    report.file_records(Bad("m", source="a", offset=4, frame=3), 2, lambda n: f"{n} recs")
    report.file_records(Bad("m", source="a", offset=8, frame=5), 5, lambda n: f"{n} recs")
    assert report.skipped == {"bad_thing": 7}
    assert report.skipped_bytes == {"bad_thing": 0}
    assert report.files["a"].skipped == {"bad_thing": 7}
    assert [str(p) for p in report.examples] == ["a@4 (frame 3): 7 recs"]
    report.file_records(Other("k", source="a", offset=0, frame=None), 4, str, kept=True)
    assert report.repaired == {"other_thing": 4}
    assert report.skipped == {"bad_thing": 7}


def test_ignore_and_unignore_balance() -> None:
    report = RunReport()
    report.ignore("not_netflow", "a", 50)
    report.ignore("not_netflow", "a", 30)
    report.unignore("not_netflow", "a", 30)
    assert report.ignored == {"not_netflow": 1}
    assert report.ignored_bytes == {"not_netflow": 50}
    report.unignore("not_netflow", "a", 50)
    assert report.reason_counts()["ignored"] == {}
    assert report.reason_counts()["ignored_bytes"] == {}
    assert report.files["a"].ignored == {}
    assert report.skipped_problems() == 0


def test_write_atomically_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")

    def broken(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    write_atomically(target, lambda path: write_json(path, {"a": 1}))
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_sha256_file_hashes_every_chunk(tmp_path: Path) -> None:
    from obserae_forensics.tables.manifest import sha256_file

    big = tmp_path / "big.pcap"
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB: more than one 1 MiB read
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()


def test_row_group_writer_matches_write_parquet_for_an_empty_table(tmp_path: Path) -> None:
    import pyarrow as pa

    from obserae_forensics.tables.parquet import RowGroupWriter, write_parquet

    table = pa.table({"a": pa.array([], pa.int64())})
    write_parquet(table, tmp_path / "whole.parquet")
    writer = RowGroupWriter(tmp_path / "pieces.parquet", table.schema)
    writer.close()
    assert (tmp_path / "pieces.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


def test_an_input_that_grew_is_said_even_with_its_mtime_kept(tmp_path: Path) -> None:
    """A file appended to on a coarse-clock file system (or with its mtime put back) keeps
    its mtime: the size alone tells that it changed."""
    import os

    from obserae_forensics.pipeline import _input_digest
    from obserae_forensics.readers import InputFile

    path = tmp_path / "a.pcap"
    path.write_bytes(CLEAN.read_bytes())
    found = path.stat()
    item = InputFile(path, "pcap", found.st_size, None, mtime_ns=found.st_mtime_ns)
    assert _input_digest(item) == (hashlib.sha256(CLEAN.read_bytes()).hexdigest(), "")
    with open(path, "ab") as handle:
        handle.write(b"\0" * 16)
    os.utime(path, ns=(found.st_atime_ns, found.st_mtime_ns))
    digest, said = _input_digest(item)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert said.startswith(f"changed while the run read it: {found.st_size} bytes when found")


def test_file_records_examples_are_in_the_place_order_of_the_file() -> None:
    report = RunReport()
    report.file_records(Bad("late", source="a", offset=100, frame=None), 1, str, variant="a")
    report.file_records(Bad("early", source="a", offset=4, frame=None), 1, str, variant="b")
    assert [p.offset for p in report.examples] == [4, 100]


def _skewed_totals(monkeypatch: pytest.MonkeyPatch, records: int, octets: int) -> None:
    """Fault injection: _Totals's sums of the sessions off by `records` and `octets`, and
    its input records off by `records` (the flows table is as written)."""
    from obserae_forensics import pipeline

    add_input, add_sessions = pipeline._Totals.add_input, pipeline._Totals.add_sessions

    def skewed_input(self, batch) -> None:
        add_input(self, batch)
        self.records_in += records

    def skewed_sessions(self, sessions) -> None:
        add_sessions(self, sessions)
        self.records_out += records
        self.octets_out += octets

    monkeypatch.setattr(pipeline._Totals, "add_input", skewed_input)
    monkeypatch.setattr(pipeline._Totals, "add_sessions", skewed_sessions, raising=True)


def _sessionize_clean(tmp_path: Path) -> tuple[int, dict, str]:
    out = tmp_path / "run"
    result = runner.invoke(app, ["sessionize", str(CLEAN), "-o", str(out), "-q"])
    return result.exit_code, json.loads((out / "manifest.json").read_text()), result.stderr


def test_conservation_compares_records_with_the_flow_rows_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """records_in == records_in_sessions but not the flows table's rows: not ok, exit 1."""
    _skewed_totals(monkeypatch, records=1, octets=0)
    code, manifest, stderr = _sessionize_clean(tmp_path)
    check = manifest["conservation"]
    assert (check["records_in"], check["records_in_sessions"], check["flow_rows"]) == (73, 73, 72)
    assert check["ok"] is False
    assert code == 1
    assert "conservation check FAILED" in stderr


def test_conservation_cites_the_bytes_in_sessions_as_summed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _skewed_totals(monkeypatch, records=0, octets=5)
    code, manifest, stderr = _sessionize_clean(tmp_path)
    check = manifest["conservation"]
    assert (check["bytes_in"], check["bytes_in_sessions"]) == (45779, 45784)
    assert check["ok"] is False and code == 1
    assert "bytes 45779 in, 45784 in sessions" in stderr
