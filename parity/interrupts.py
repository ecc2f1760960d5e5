"""Ctrl-C at a safe point.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives, and that can be
inside a library's import of a C extension: measured, a Ctrl-C 3 s into SGLang's run ended the
process with SIGSEGV (exit -11, the report directory's staging left behind) instead of exit 130.
So while a run is going, parity's handler only notes the first Ctrl-C, and `checkpoint()` raises it
at the next safe point: every progress line, every tap (each pipeline stage, DiT call, block and
scheduler step of both libraries), and the loop that waits for the port's ranks. A second Ctrl-C
raises at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_pending = False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _pending:  # the second Ctrl-C: now
        raise KeyboardInterrupt
    _pending = True


def checkpoint() -> None:
    """Raise KeyboardInterrupt here if Ctrl-C was pressed since the last checkpoint."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, Ctrl-C is raised at safe points (a Ctrl-C still pending at the end is raised
    there). Only in the main thread, and not where SIGINT is ignored (a process started in the
    background without job control inherits it ignored: it stays so)."""
    global _pending
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    _pending = False
    try:
        yield
        checkpoint()
    finally:
        signal.signal(signal.SIGINT, previous)
        _pending = False
