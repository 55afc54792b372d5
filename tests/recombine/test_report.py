"""The written outputs: tables, report.md/report.json with the same content, the timeline PNG,
"Find Session Fragments", and the refusal to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from obserae_forensics.errors import UsageError
from obserae_forensics.recombine import (
    RECOMBINED_SCHEMA,
    find_fragments,
    human_seconds,
    recombine_runs,
)

from .conftest import session, write_run


def sample_run(tmp_path: Path) -> Path:
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(0x1A, 0x12)),
        session(
            "A1", 900, 1799, close="hard_timeout", split=1, conversation="A", flags=(0x18, 0x10)
        ),
        session("A2", 1800, 1900, close="fin", split=2, conversation="A", flags=(0x19, 0x11)),
        session(
            "B",
            100,
            999,
            close="evicted",
            a=("10.1.1.1", 5),
            b=("10.0.0.2", 22),
            ab=(10**6, 900),
            flags=(0x1A, 0x12),
        ),
        session("B1", 1010, 1100, a=("10.1.1.1", 5), b=("10.0.0.2", 22), flags=(0x18, 0x10)),
    ]
    rows += [
        session(
            f"u{i}",
            200 + i,
            201 + i + i % 7,
            protocol=17,
            a=("10.2.0.1", 1000 + i),
            b=("10.2.0.2", 53),
        )
        for i in range(20)
    ]
    return write_run(tmp_path / "run", rows)


def test_outputs_are_written_and_agree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = recombine_runs([sample_run(tmp_path)], out)
    table = pq.read_table(out / "sessions_recombined.parquet")
    assert table.schema.equals(RECOMBINED_SCHEMA)
    assert table.num_rows == 22
    assert pq.read_table(out / "recombined_fragments.parquet").num_rows == 25
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report == json.loads(json.dumps(result.report))
    assert report["counts"]["split_conversations"] == 2
    assert report["split_by_reason"]["hard_timeout"] == 1
    assert report["split_by_reason"]["evicted"] == 1
    assert [c["conversation_id"] for c in report["largest"]] == ["B", "A"]
    assert [c["conversation_id"] for c in report["longest"]] == ["A", "B"]
    assert [f["session_id"] for f in report["longest"][0]["timeline"]] == ["A", "A1", "A2"]
    durations = report["durations"]
    # 20 UDP conversations of 1-7 s, B lasted 1000 s, A 1900 s
    assert durations["hard_timeout_keeping_whole_s"] == {"50%": 5.0, "90%": 10.0, "99%": 2700.0}
    assert durations["current_hard_timeout"] == [{"seconds": 900.0, "keeps_whole_pct": 90.91}]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for text in (
        "## Split conversations by reason",
        "| evicted | 1 |",
        "### A: TCP 10.0.0.1:40000 → 10.0.0.2:443",
        "| 99% | 45 min (2700 s) |",
        "![fragment timelines](timeline.png)",
        "more may follow after" if report["outside_window"]["tail_cut"] else "None.",
        # what the setting did beside what the durations say it would (a review: "keeps
        # 90.91 % whole" read as measured), and what each reason means
        "| 15 min | 90.91 % |",
        "Measured: 20 of 22 conversation(s) (90.91 %) came out in one fragment; 1 were split "
        "by hard_timeout, and 1 by evicted, which no hard_timeout keeps whole (Split "
        "conversations by reason).",
        "`split`: linked by its run's split numbering alone",
    ):
        assert text in markdown
    # a hard_timeout to keep a conversation whole is recommended only where hard_timeout
    # split it: B was cut by the open-session cap (a review: "1 s" for one split late)
    rows = {
        line.split(" | ")[0]: line for line in markdown.splitlines() if line[:4] in ("| A ", "| B ")
    }
    assert rows["| A"].endswith(f"| {human_seconds(2700)} |")
    assert rows["| B"].endswith("| — (not split by it) |")
    png = (out / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_same_runs_give_the_same_bytes(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    recombine_runs([run], tmp_path / "one")
    recombine_runs([run], tmp_path / "two")
    for name in ("report.md", "report.json", "timeline.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert pq.read_table(tmp_path / "one" / "sessions_recombined.parquet").equals(
        pq.read_table(tmp_path / "two" / "sessions_recombined.parquet")
    )


def test_existing_outputs_need_force(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    recombine_runs([run], tmp_path / "out")
    with pytest.raises(UsageError, match="use --force"):
        recombine_runs([run], tmp_path / "out")
    recombine_runs([run], tmp_path / "out", force=True)


def test_find_session_fragments_from_any_fragment(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    result = recombine_runs([run], tmp_path / "out")
    for source in (result, tmp_path / "out", [run]):
        frame = find_fragments(source, "A1")
        assert frame["session_id"].tolist() == ["A", "A1", "A2"]
        assert frame["link_reason"].tolist()[1:] == ["hard_timeout", "hard_timeout"]
    assert find_fragments(result, "A")["fragment_index"].tolist() == [0, 1, 2]
    with pytest.raises(UsageError, match="no session or conversation 'nope'"):
        find_fragments(result, "nope")


def test_human_durations() -> None:
    assert [human_seconds(s) for s in (0.25, 42, 900, 3725, 90000)] == [
        "250 ms",
        "42 s",
        "15 min",
        "1 h 2 min",
        "1 d 1 h",
    ]


def test_timeline_draws_a_long_conversation_in_a_few_collections(tmp_path: Path) -> None:
    """Found by a scale audit: a bar per fragment made the figure's time grow with the square
    of the fragments (matplotlib rescans every collection of the axes at each new one):
    16,667 fragments of one conversation took 46 s, and a month of 20 long connections at
    the default hard_timeout would take ten minutes. Bars of one lane, colour and lateness
    are one collection; late bars keep their own, overlapping ones their lanes."""
    from matplotlib.axes import Axes

    from obserae_forensics.recombine.report import write_timeline

    def fragment(i: int, offset: float, late: bool = False) -> dict:
        return {
            "fragment": i,
            "offset_s": offset,
            "length_s": 59.0,
            "late": late,
            "close_reason": "hard_timeout" if i < 2_998 else "fin",
        }

    timeline = [fragment(i, i * 60.0) for i in range(3_000)]
    timeline += [fragment(3_000, 30.0, late=True)]  # overlaps fragments 0 and 1: a lane
    conversation = {
        "conversation_id": "c",
        "protocol": "TCP",
        "client": "10.0.0.1:40000",
        "server": "10.0.0.2:22",
        "first_seen": "2026-12-05T00:00:00Z",
        "duration_s": 180_000.0,
        "timeline": timeline,
    }
    calls: list[int] = []
    real = Axes.broken_barh

    def counted(self: Axes, xranges: list, *args: object, **kwargs: object) -> object:
        calls.append(len(xranges))
        return real(self, xranges, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Axes, "broken_barh", counted)
        write_timeline(
            {"largest": [conversation], "longest": [conversation]}, tmp_path / "timeline.png"
        )
    assert sorted(calls) == [1, 2, 2_998]  # the late one, the fin ones, the rest
    assert (tmp_path / "timeline.png").read_bytes().startswith(b"\x89PNG")
