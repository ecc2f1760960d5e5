"""The report directory (`--out`) as one unit: checked before any model work, locked against a
concurrent run into the same directory, filled in a sibling staging directory and swapped in whole,
so every file in it belongs to one run and an interrupted run leaves the previous report untouched."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from parity.errors import ParityError
from parity.files import created_mode


def check(out: Path) -> None:
    """ParityError unless `out` can be the report directory: not a file, and the directory that
    holds it exists or can be created and is writable (so nothing is found out after a whole run)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParityError(f"--out {out} is a file, not a directory")
    parent = out.absolute().parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ParityError(f"--out {out}: {existing} is not a directory")
    where = out if out.is_dir() else existing
    if not _writable(where):
        raise ParityError(f"--out {out}: {where} is not writable")


def _writable(directory: Path) -> bool:
    """By trying: os.access says yes to root on a read-only mount, and no for ACLs it cannot read."""
    try:
        tempfile.TemporaryFile(dir=directory).close()
    except OSError:
        return False
    return True


class ReportDir:
    """`with ReportDir(out) as staging:` write the run's files into `staging`, then `commit()` swaps
    them in as `out`; leaving the block without a commit (an error, Ctrl-C) discards them."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out).absolute()
        self.staging: Path | None = None
        self._lock: int | None = None

    def __enter__(self) -> Path:
        check(self.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.out.parent / f".{self.out.name}.lock"
        self._lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise ParityError(f"another parity run is writing {self.out} (lock {lock_path}): wait for it") from None
        self.staging = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.staging-"))
        os.chmod(self.staging, created_mode(directory=True))
        return self.staging

    def commit(self) -> None:
        """Swap the staging directory in as `out` (the old one is renamed aside, then removed)."""
        assert self.staging is not None
        old = None
        if self.out.exists():
            old = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.old-"))
            os.replace(self.out, old / "report")
        os.replace(self.staging, self.out)
        self.staging = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self.staging is not None:  # not committed: the previous report stays as it was
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None
