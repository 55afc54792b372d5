"""Work directories of killed runs: removed by the next run into the same place, and
only those (tables/scratch.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.tables.parquet import staged_directory
from obserae_forensics.tables.scratch import (
    OWNER_FILE,
    OwnedDirectory,
    owned_directory,
    sweep,
    work_prefix,
)
from tests.test_cli import FIXTURE, SLOW_RUN

runner = CliRunner()


def dead(directory: OwnedDirectory) -> Path:
    """`directory` as a killed run leaves it: its lock let go by the kernel, nothing
    removed."""
    assert directory._fd is not None
    os.close(directory._fd)
    directory._fd = None
    return directory.path


def test_sweep_removes_what_dead_runs_left_and_nothing_else(tmp_path: Path) -> None:
    alive = OwnedDirectory(tmp_path, ".out.", ".partial")
    gone = dead(OwnedDirectory(tmp_path, ".out.", ".partial"))
    (gone / "sessions.parquet").write_bytes(b"x" * 4096)
    (gone / ".consolidation").mkdir()
    (gone / ".consolidation" / "bucket").write_bytes(b"y")
    foreign = tmp_path / ".out.mine.partial"  # the name, but no lock file: not ours
    foreign.mkdir()
    (tmp_path / ".out.file.partial").write_bytes(b"a file of that name")
    linked = tmp_path / ".out.link.partial"  # a link to a dead run's directory elsewhere
    elsewhere = dead(OwnedDirectory(tmp_path, ".elsewhere.", ""))
    linked.symlink_to(elsewhere)
    other = dead(OwnedDirectory(tmp_path, ".other.", ".partial"))  # another output's

    assert sweep(tmp_path, ".out.", ".partial") == [gone]
    assert not gone.exists()
    assert alive.path.is_dir() and (alive.path / OWNER_FILE).is_file()
    assert foreign.is_dir() and linked.is_symlink() and elsewhere.is_dir() and other.is_dir()
    assert (tmp_path / ".out.file.partial").is_file()
    assert sweep(tmp_path, ".out.", ".partial") == []  # alive stays alive
    alive.remove()
    assert not alive.path.exists()
    assert sweep(tmp_path / "missing", ".out.", ".partial") == []


def test_a_released_directory_keeps_no_lock_file(tmp_path: Path) -> None:
    """The staging directory becomes the output: its lock file must not go with it, and a
    directory no run holds any more is never judged dead while it is being renamed."""
    owned = OwnedDirectory(tmp_path, ".out.", ".partial")
    owned.release()
    assert owned.path.is_dir() and list(owned.path.iterdir()) == []
    assert sweep(tmp_path, ".out.", ".partial") == []


def test_staged_directory_sweeps_its_own_name_only(tmp_path: Path) -> None:
    """`.run.` + 8 characters + `.partial` only: `--out run.b`'s (`.run.b.xxxxxxxx.partial`)
    and an export `run.parquet`'s are other targets' (a review: swept and named as the
    run's)."""
    gone = dead(OwnedDirectory(tmp_path, ".run.", ".partial"))
    kept = [
        dead(OwnedDirectory(tmp_path, prefix, ".partial"))
        for prefix in (".run2.", ".run.b.", ".run.parquet.")
    ]
    swept: list[Path] = []
    with staged_directory(tmp_path / "run", force=False, swept=swept) as staging:
        assert (staging / OWNER_FILE).is_file()
        (staging / "manifest.json").write_text("{}")
    assert swept == [gone] and not gone.exists() and all(path.exists() for path in kept)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["manifest.json"]


def test_owned_directory_is_removed_after_its_block(tmp_path: Path) -> None:
    gone = dead(OwnedDirectory(tmp_path, ".recombine.", ".scratch"))
    swept: list[Path] = []
    with (
        pytest.raises(RuntimeError),
        owned_directory(tmp_path, ".recombine.", ".scratch", swept) as work,
    ):
        (work / "bucket").write_bytes(b"z")
        raise RuntimeError
    assert swept == [gone] and list(tmp_path.iterdir()) == []


def test_a_killed_run_is_cleaned_up_by_the_next_one(tmp_path: Path) -> None:
    """SIGKILL (the out-of-memory killer, `kill -9`) cannot be caught: the staging
    directory of the killed run (hundreds of MB on large inputs) stayed hidden beside the
    output for good. The next run into the same --out removes it and says so."""
    out = tmp_path / "run"
    started = tmp_path / "started"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_RUN,
            str(started),
            "feed",
            "sessionize",
            str(FIXTURE),
            "--out",
            str(out),
            "--batch-size",
            "7",
            "-q",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    assert len(left) == 1 and (left[0] / OWNER_FILE).is_file() and not out.exists()

    result = runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert f"removed 1 hidden work directory that killed runs had left: {left[0]}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "started"]
    again = runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(out), "-q", "--force"])
    assert again.exit_code == 0 and "removed" not in again.stderr


def test_recombine_removes_what_a_killed_recombine_left_in_its_out(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(run), "-q"]).exit_code == 0
    out = tmp_path / "rc"
    out.mkdir()
    gone = dead(OwnedDirectory(out, ".recombine.", ".partial"))
    (gone / "scratch").write_bytes(b"w" * 1024)
    result = runner.invoke(app, ["recombine", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"killed runs had left: {gone}" in result.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_file_written_whole_sweeps_what_a_killed_writer_of_it_left(tmp_path: Path) -> None:
    """An export (868 MB of flows for a million records) half-written by a killed run
    stayed hidden beside its target; the next write of that target removes it. Another
    target's work directory is not its to judge."""
    from obserae_forensics.tables.parquet import write_atomically

    gone = dead(OwnedDirectory(tmp_path, ".conv.csv.", ".partial"))
    (gone / "conv.csv").write_bytes(b"half")
    kept = dead(OwnedDirectory(tmp_path, ".other.csv.", ".partial"))
    write_atomically(tmp_path / "conv.csv", lambda path: path.write_text("whole"))
    assert (tmp_path / "conv.csv").read_text() == "whole"
    assert not gone.exists() and kept.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["conv.csv", kept.name])
    write_atomically(tmp_path / "empty", lambda path: None)  # a writer that writes nothing
    assert (tmp_path / "empty").read_bytes() == b""


def test_without_locks_the_directory_works_and_is_never_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some FUSE and SMB mounts refuse flock: the run must not fail for it."""
    import errno
    import fcntl

    def refused(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refused)
    with staged_directory(tmp_path / "run", force=False) as staging:
        assert list(staging.iterdir()) == []
        (staging / "manifest.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    unlocked = OwnedDirectory(tmp_path, ".run.", ".partial")
    monkeypatch.undo()
    assert sweep(tmp_path, ".run.", ".partial") == [] and unlocked.path.is_dir()


@pytest.mark.parametrize("length", [237, 245, 255])
def test_a_long_name_is_still_written_whole(tmp_path: Path, length: int) -> None:
    """A target of 238 to 245 bytes was written through mkstemp's `.NAME.xxxxxxxx`; its
    work directory's `.partial` suffix must not make it too long (a review)."""
    from obserae_forensics.tables.parquet import write_atomically

    target = tmp_path / ("é" * (length // 2) + "a" * (length % 2))
    assert len(target.name.encode()) == length
    gone = dead(OwnedDirectory(tmp_path, work_prefix(target.name), ".partial"))
    write_atomically(target, lambda path: path.write_text("whole"))
    assert target.read_text() == "whole" and not gone.exists()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_sweep_never_takes_an_output_being_put_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a run's staging directory let go of its lock before the rename; a sweep
    that had opened its `.owner` just before took the lock and emptied the new output
    (its rmtree goes on through a directory descriptor after the rename). The lock is
    now held past the rename, and a sweep leaves a directory whose `.owner` is unlinked."""
    import fcntl

    owned = OwnedDirectory(tmp_path, ".run.", ".partial", private=False)
    (owned.path / "sessions.parquet").write_bytes(b"the run")
    real = fcntl.flock

    def committed_meanwhile(fd: int, operation: int) -> None:
        # the sweep holds the `.owner` open: the run puts itself in place as
        # staged_directory does, then the sweep tries the lock
        monkeypatch.setattr(fcntl, "flock", real)
        owned.release()
        os.replace(owned.path, tmp_path / "run")
        owned.close()
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", committed_meanwhile)
    assert sweep(tmp_path, ".run.", ".partial") == []
    assert fcntl.flock is real  # the sweep did open the `.owner` and try its lock
    assert (tmp_path / "run" / "sessions.parquet").read_bytes() == b"the run"
    assert list((tmp_path / "run").iterdir()) == [tmp_path / "run" / "sessions.parquet"]


def test_what_is_not_ours_to_judge_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO planted as `.owner` (a shared TMPDIR) hung every run that swept (a review);
    a directory of another host (locks of NFS `local_lock=flock` or sshfs are known only
    where they are held) or of another user is not this run's to judge."""
    fifo = tmp_path / ".out.fifofifo.partial"
    fifo.mkdir()
    os.mkfifo(fifo / OWNER_FILE)
    elsewhere = dead(OwnedDirectory(tmp_path, ".out.", ".partial"))
    (elsewhere / OWNER_FILE).write_bytes(b"another-host\nsome-boot\n4242\n")
    assert sweep(tmp_path, ".out.", ".partial") == []
    assert fifo.is_dir() and elsewhere.is_dir()
    others = dead(OwnedDirectory(tmp_path, ".out.", ".partial"))
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert sweep(tmp_path, ".out.", ".partial") == [] and others.is_dir()
    monkeypatch.undo()
    assert sweep(tmp_path, ".out.", ".partial") == [others]


def test_work_directories_under_tmpdir_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: recombine's work files under TMPDIR (the evidence's sessions) were made
    readable by every user (0755), where TemporaryDirectory made them 0700."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mask = os.umask(0o022)
    try:
        with owned_directory(None, ".recombine.", ".partial") as work:
            assert work.parent == tmp_path
            assert oct(work.stat().st_mode & 0o777) == oct(0o700)
    finally:
        os.umask(mask)


def test_an_output_that_appears_while_the_run_goes_on_is_not_replaced(tmp_path: Path) -> None:
    """Two runs into one --out, both started before either finished: the later one
    replaced the earlier one's output at its end without a word, --force or not. It is
    checked again as the run is put in place."""
    from obserae_forensics.errors import UsageError

    out = tmp_path / "run"
    with (
        pytest.raises(UsageError, match="appeared while this run went on"),
        staged_directory(out, force=False) as staging,
    ):
        (staging / "manifest.json").write_text("this run")
        out.mkdir()
        (out / "manifest.json").write_text("the other run")
    assert (out / "manifest.json").read_text() == "the other run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with staged_directory(out, force=True) as staging:  # replaced whole, as --force says
        (staging / "manifest.json").write_text("this run")
        (out / "manifest.json").write_text("the other run, again")
    assert (out / "manifest.json").read_text() == "this run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_output_that_appears_at_the_rename_itself_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from obserae_forensics.errors import UsageError
    from obserae_forensics.tables import parquet

    out = tmp_path / "run"
    real = os.replace

    def another_run_first(source: object, target: object) -> None:
        if Path(str(target)) == out and not out.exists():
            out.mkdir()
            (out / "manifest.json").write_text("the other run")
        real(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(parquet.os, "replace", another_run_first)
    with (
        pytest.raises(UsageError, match="appeared while this run went on"),
        staged_directory(out, force=False) as staging,
    ):
        (staging / "manifest.json").write_text("this run")
    monkeypatch.undo()
    assert (out / "manifest.json").read_text() == "the other run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
