"""What the libraries print (progress bars, warnings, SGLang's coloured tracebacks) goes to
`libraries.log` in the report directory, not to the console, which keeps parity's own lines.
Redirected at the file-descriptor level, so output from C extensions and subprocess-less threads
is caught too; `--verbose` leaves the console as it is."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from parity import progress

LOG_NAME = "libraries.log"


@contextmanager
def to_log(log_path: Path, verbose: bool = False) -> Iterator[None]:
    """Within the block, file descriptors 1 and 2 write to `log_path` (appended), and so do sys.stdout and
    sys.stderr (a test runner or a notebook replaces them with objects that bypass fds 1 and 2: pytest's
    capture, where tqdm's bars would land); parity's progress lines still reach the console through a
    duplicate of the original stderr."""
    if verbose:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    console = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        previous = progress.use_console(console)
        streams = sys.stdout, sys.stderr
        # Never closed, and writing to whatever fds 1 and 2 are: a library's log handler made in the block
        # keeps a reference to them and still works after it.
        sys.stdout, sys.stderr = (_fd_stream(fd) for fd in (1, 2))
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            sys.stdout, sys.stderr = streams
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            progress.use_console(previous)
            console.close()


def _fd_stream(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="replace", line_buffering=True)
