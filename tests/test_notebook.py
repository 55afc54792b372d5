"""notebooks/session_review.ipynb runs top to bottom on a fresh sessionize run of the fixture.

The notebook is executed with nbclient in a real kernel, so a renamed column or function
breaks the suite instead of the next person's review. Set OBSERAE_NOTEBOOK_PNGS to a
directory to keep the figures it drew (for a person to look at).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO

NOTEBOOK = REPO / "notebooks" / "session_review.ipynb"
PLOT_KINDS = ("traffic_over_time", "talker_heatmap", "fragment_timeline", "coherence_histogram")


def test_committed_notebook_has_no_outputs() -> None:
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the [test] extras")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    source = "\n".join(cell.source for cell in code)
    for kind in PLOT_KINDS:
        assert f"plots.{kind}(" in source


@pytest.mark.parametrize(
    "own_run", ["", "run", "empty"], ids=["fixture", "OBSERAE_RUN", "OBSERAE_RUN-empty"]
)
def test_notebook_runs_on_a_fresh_fixture_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_run: str
) -> None:
    """Without OBSERAE_RUN the notebook sessionizes the fixture and makes the review's
    decisions on it; with it, the decisions (the fixture's hosts) are left to the user and
    the review goes on with that run: it sessionized the fixture again and described it
    from there on, without a word (found by an audit). A run of one's own is reviewed
    from a case folder outside any checkout, and may hold no session: the notebook looked
    for the bundled fixtures first (StopIteration) and took the longest of no sessions
    (IndexError), found by another audit."""
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the [test] extras")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the [test] extras")
    pytest.importorskip("ipykernel", reason="ipykernel is in the [test] extras")
    where = REPO / "notebooks"
    if own_run:  # a run of the user's: no Cartography, no Flow Matrix (a review: the
        # notebook failed on anything but the fixture's rules, which the test gave it)
        run_dir = tmp_path / "run"
        window = ["--from", "2030-01-01"] if own_run == "empty" else []
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "obserae_forensics",
                "sessionize",
                str(FIXTURES / "sf_v9_varsvc.pcap"),
                "--out",
                str(run_dir),
                *window,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        monkeypatch.setenv("OBSERAE_RUN", str(run_dir))
        where = tmp_path / "case"
        where.mkdir()
    else:
        monkeypatch.delenv("OBSERAE_RUN", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(where)}}
    )
    client.execute()

    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "error"
    ]
    assert errors == []
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert ("OBSERAE_RUN is set" in printed) == bool(own_run)
    assert ("unmatched after adding lan-sync alone" in printed) != bool(own_run)
    assert ("the run has no sessions" in printed) == (own_run == "empty")
    # long conversations are ranked as conversations, fragments put together: ranked as
    # sessions, a shell cut every 15 minutes stood beside any 15-minute session
    (ranked,) = [cell for cell in notebook.cells if "longest = " in cell.source]
    shown = "".join(output.get("data", {}).get("text/plain", "") for output in ranked.outputs)
    assert "fragment_count" in shown and "conversation_id" in shown
    images = [
        output["data"]["image/png"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(images) >= (4 if own_run == "empty" else 5)
    keep = os.environ.get("OBSERAE_NOTEBOOK_PNGS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for number, image in enumerate(images):
            (Path(keep) / f"figure_{number}.png").write_bytes(base64.b64decode(image))
