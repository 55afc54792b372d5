"""Hidden work directories that a later run can tell from a live one's, and remove.

A run's staging directory beside its output, recombine's work directories, and the
directory each file written whole is made in (write_atomically, staged_file) are removed
when the run ends, fails or is stopped by a signal (signals.py). A run killed outright
(SIGKILL, the kernel's out-of-memory killer) leaves them, hidden and often
hundreds of MB (the consolidation buckets alone are ~700 MB for 5 M sessions), and
nothing ever removed them.

Each such directory holds an `.owner` file (naming the host, its boot and the process)
on which its run holds an exclusive `flock`: the kernel lets go of it when the process
ends, however it ends. A later run into the same place (`sweep`) removes the directories
whose lock it can take, and only those: a live run's lock is held; one of another host or
boot, one of another user, or one without a regular `.owner` file (made by an earlier
version of this tool, on a filesystem that refuses locks, or anything else of the name)
is left alone. The lock file is locked under a temporary name and renamed into place, so
no run ever shows an `.owner` that nobody holds; a run putting its directory in place as
an output unlinks it, and lets go of the lock only after the rename, so a sweep that
opened it before never takes an output for a leftover (a review: it emptied a live run's
output as it was renamed into place).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OWNER_FILE = ".owner"
# a work directory's name is `.NAME.` + 8 random characters + a suffix of up to 8, within
# the 255 bytes a name may have: NAME cut to this many bytes
NAME_BYTES = 200
# what mkdtemp puts between the prefix and the suffix (tempfile._RandomNameSequence)
_RANDOM = "[a-z0-9_]{8}"


def work_prefix(name: str) -> str:
    """`.NAME.`, NAME cut short enough that a work directory named after it fits (a file
    of 238 to 245 bytes could be written whole through mkstemp's shorter name, and
    failed once its work directory had a suffix: a review)."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > NAME_BYTES:
        name = encoded[:NAME_BYTES].decode("utf-8", "surrogateescape")
    return f".{name}."


def _host() -> bytes:
    """This machine and its boot, as an `.owner` file names them: a lock is only known
    on the machine that holds it (NFS mounted `local_lock=flock`, sshfs, CIFS `nobrl`: a
    run on another host looks dead), so only directories of this host and boot are
    judged. (One of an earlier boot is surely dead, but a host of the same name, a
    cloned machine, would name another boot too: left alone.)"""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}\n{boot}\n".encode()


class OwnedDirectory:
    """A directory made by mkdtemp in `parent`, locked by this process until `close` or
    `remove`. `private`: 0700, as mkdtemp makes it (work files under TMPDIR hold
    evidence); else the mode mkdir would give, for a directory that becomes an output."""

    def __init__(self, parent: Path, prefix: str, suffix: str, *, private: bool = True) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
        self._fd: int | None = None
        claim = self.path / f"{OWNER_FILE}.new"
        try:
            if not private:
                os.chmod(self.path, 0o777 & ~process_umask())
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
                os.write(self._fd, _host() + f"{os.getpid()}\n".encode())
                os.replace(claim, self.path / OWNER_FILE)
        except BaseException:
            self.remove()
            raise

    def release(self) -> None:
        """Remove the `.owner` file (the directory is about to become an output), the lock
        still held until `close`: a sweep that opened the file before sees it unlinked
        once it takes the lock, and leaves the directory (renamed into place by then)."""
        if self._fd is not None:
            (self.path / OWNER_FILE).unlink(missing_ok=True)

    def close(self) -> None:
        """Let go of the lock; the directory stays."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Remove the directory and let go of it."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.close()


def claim(
    parent: Path, prefix: str, suffix: str, swept: list[Path] | None = None, *, private: bool = True
) -> OwnedDirectory:
    """A new OwnedDirectory in `parent`, once the ones of its name that killed runs left
    there are removed (and added to `swept`)."""
    removed = sweep(parent, prefix, suffix)
    if swept is not None:
        swept.extend(removed)
    return OwnedDirectory(parent, prefix, suffix, private=private)


@contextmanager
def owned_directory(
    parent: Path | None, prefix: str, suffix: str, swept: list[Path] | None = None
) -> Iterator[Path]:
    """A private work directory in `parent` (TMPDIR when None) for the block, removed
    after it; the ones of its name that killed runs left there are removed first, and
    added to `swept`."""
    where = Path(tempfile.gettempdir()) if parent is None else Path(parent)
    directory = claim(where, prefix, suffix, swept)
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
    """Remove the directories in `parent` named `prefix` + mkdtemp's 8 characters +
    `suffix` that a run which no longer lives left (see the module's docstring): ours
    (this user's), with a regular `.owner` file naming this host, whose lock can be
    taken and which is still linked (a run that has just put its directory in place
    unlinks it first). Return them, in name order."""
    try:
        entries = sorted(os.scandir(parent), key=lambda entry: entry.name)
    except OSError:  # missing or unlistable: nothing of ours to find there
        return []
    pattern = re.compile(re.escape(prefix) + _RANDOM + re.escape(suffix))
    removed: list[Path] = []
    for entry in entries:
        if pattern.fullmatch(entry.name) and _dead(Path(entry.path)):
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.lexists(entry.path):
                removed.append(Path(entry.path))
    return removed


def _dead(directory: Path) -> bool:
    """Whether `directory` is a work directory whose run is over (sweep)."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return False
        # non-blocking: a FIFO planted as `.owner` (a shared TMPDIR) hung every run;
        # read-write: NFS grants an exclusive lock only to a file open for writing
        fd = os.open(directory / OWNER_FILE, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # no owner file, or not ours to open: not ours to judge
        return False
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
            return False
        if not os.read(fd, 4096).startswith(_host()):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its run is alive
            return False
        return os.fstat(fd).st_nlink > 0
    except OSError:
        return False
    finally:
        os.close(fd)


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
