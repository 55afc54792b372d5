"""The seed's "Common Queries" as the README gives them (API and DuckDB) run on the
bundled fixture, and give the counts the README states beside them."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from obserae_forensics import query
from obserae_forensics.cli import app

REPO = Path(__file__).resolve().parents[2]
SECTION = "### The seed's common queries, offline"


def _blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    section = text[start : text.index("\n## ", start)]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seed") / "run"
    fixtures = REPO / "fixtures"
    arguments = [
        "sessionize",
        str(fixtures / "sf_v9_varsvc.pcap"),
        "--cartography",
        str(fixtures / "cartography.yaml"),
        "--flow-matrix",
        str(fixtures / "flow_matrix.yaml"),
        "-o",
        str(out),
        "-q",
    ]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    return out


def test_the_readme_queries_run(run_dir: Path) -> None:
    [python] = _blocks("python")
    exec(python.replace('"RUN"', repr(str(run_dir))), {})  # the README's own code
    [sql] = _blocks("sql")
    rows = duckdb.sql(sql.replace("'RUN/", f"'{run_dir}/")).fetchnumpy()
    assert len(rows["ip_a"]) == 0  # no scan in the fixture


def test_the_counts_the_readme_states(run_dir: Path) -> None:
    run = query.load(run_dir)
    last_hour = query.SessionQuery().last(3600)
    touching = last_hour.entity("lab-server").apply(run)
    outbound = last_hour.entity("internal4", side="client").entity("internet4", side="server")
    scans = last_hour.state("closed").close_reason("no_reply").protocol("tcp")
    unmatched = last_hour.state("closed").unmatched()
    counts = [
        len(touching),
        len(outbound.apply(run)),
        len(scans.apply(run)),
        len(unmatched.apply(run)),
    ]
    consolidated = last_hour.apply(run, run.consolidated)
    counts.append(int((consolidated["sampler_count"] > 1).sum()))
    [python] = _blocks("python")
    stated = [int(n) for n in re.findall(r"^# .*\((\d+)[;:)]", python, flags=re.M)]
    assert counts == stated == [35, 2, 0, 2, 0]
    # the overlap rule: a condition on opened_at alone would leave out sessions that began
    # before the hour; here the hour holds all
    assert len(last_hour.apply(run)) == len(run.sessions)
