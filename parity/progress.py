"""Progress lines on stderr for long phases, and wall-clock timings for the report."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from parity import interrupts

_START = time.perf_counter()
_console: TextIO | None = None  # where progress lines go; None: sys.stderr (parity.library_output sets it)
quiet = False  # `parity run -q`


def use_console(stream: TextIO | None) -> TextIO | None:
    """Send progress lines to `stream` (None: sys.stderr); returns the previous one."""
    global _console
    previous, _console = _console, stream
    return previous


def say(message: str) -> None:
    interrupts.checkpoint()  # a progress line is a safe point for Ctrl-C (parity.interrupts)
    if not quiet:
        print(f"[parity {time.perf_counter() - _START:7.1f}s] {message}", file=_console or sys.stderr, flush=True)


@contextmanager
def phase(name: str, timings: dict[str, float], message: str | None = None) -> Iterator[None]:
    """Announce a phase and store its duration in `timings[name]` (seconds), even on error."""
    say(message or f"{name} ...")
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 3)
