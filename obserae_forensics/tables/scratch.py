"""Hidden work directories that a later run can tell from a live one's, and remove.

A run's staging directory beside its output, recombine's work directories, and the
directory each file written whole is made in (write_atomically, staged_file) are removed
when the run ends, fails or is stopped by a signal (signals.py). A run killed outright
(SIGKILL, the kernel's out-of-memory killer, a power cut) leaves them, hidden and often
hundreds of MB (the consolidation buckets alone are ~700 MB for 5 M sessions), and
nothing ever removed them.

Each such directory holds an `.owner` file on which its run holds an exclusive `flock`:
the kernel lets go of it when the process ends, however it ends. A later run into the
same place (`sweep`) removes the directories whose lock it can take, and only those: a
live run's lock is held, and a directory without an `.owner` file (one made by an
earlier version of this tool, or by anything else that happens to match the name) is
left alone. The lock file is locked under a temporary name and renamed into place, so
no run ever shows an `.owner` that nobody holds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OWNER_FILE = ".owner"
# a work directory's name is `.NAME.` + 8 random characters + a suffix of up to 8, within
# the 255 bytes a name may have: NAME cut to this many bytes
NAME_BYTES = 200


def work_prefix(name: str) -> str:
    """`.NAME.`, NAME cut short enough that a work directory named after it fits (a file
    of 238 to 245 bytes could be written whole through mkstemp's shorter name, and
    failed once its work directory had a suffix: a review)."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > NAME_BYTES:
        name = encoded[:NAME_BYTES].decode("utf-8", "surrogateescape")
    return f".{name}."


class OwnedDirectory:
    """A directory made by mkdtemp in `parent`, locked by this process until `release`
    or `remove`."""

    def __init__(self, parent: Path, prefix: str, suffix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
        # made through mkdtemp (0700); the mode mkdir would have given, as for every output
        os.chmod(self.path, 0o777 & ~process_umask())
        self._fd: int | None = None
        claim = self.path / f"{OWNER_FILE}.new"
        try:
            self._fd = os.open(claim, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # a filesystem without locks (some FUSE and SMB mounts): the directory
                # works as before, with no `.owner`, so no later run will ever judge it
                os.close(self._fd)
                self._fd = None
                claim.unlink()
            else:
                os.replace(claim, self.path / OWNER_FILE)
        except BaseException:
            self.remove()
            raise

    def release(self) -> None:
        """Let go of the directory, which stays (its `.owner` file is removed first: the
        directory is about to become an output, or to be removed by its run)."""
        if self._fd is None:
            return
        try:
            (self.path / OWNER_FILE).unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Remove the directory and let go of it."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextmanager
def owned_directory(parent: Path | None, prefix: str, suffix: str,
                    swept: list[Path] | None = None) -> Iterator[Path]:
    """A work directory in `parent` (TMPDIR when None) for the block, removed after it;
    the ones of its name that killed runs left there are removed first, and added to
    `swept`."""
    where = Path(tempfile.gettempdir()) if parent is None else Path(parent)
    removed = sweep(where, prefix, suffix)
    if swept is not None:
        swept.extend(removed)
    directory = OwnedDirectory(where, prefix, suffix)
    try:
        yield directory.path
    finally:
        directory.remove()


@contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """Where to write `path` before renaming it into place (the caller renames it, in the
    block): an empty file of its name in a work directory of its own beside it, so that
    a killed run's half-written file (an export: 868 MB for a million records) is swept
    like the directories are, and two runs writing one path never share a temporary."""
    with owned_directory(path.parent, work_prefix(path.name), ".partial") as work:
        temporary = work / path.name
        temporary.touch()  # the mode open() gives; a writer that writes nothing leaves it
        yield temporary


def sweep(parent: Path, prefix: str, suffix: str) -> list[Path]:
    """Remove the directories in `parent` named `prefix`...`suffix` that a run which no
    longer lives left (see the module's docstring); return them, in name order."""
    try:
        entries = sorted(os.scandir(parent), key=lambda entry: entry.name)
    except OSError:  # missing or unlistable: nothing of ours to find there
        return []
    removed: list[Path] = []
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)
                and len(entry.name) > len(prefix) + len(suffix)):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            fd = os.open(Path(entry.path) / OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # no owner file: not ours to judge
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its run is alive
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.lexists(entry.path):
                removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed


def process_umask() -> int:
    """The file mode creation mask, read where Linux shows it (setting it to read it back
    would race the writer threads' own files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
