"""Progress lines on stderr for long phases, and wall-clock timings for the report."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_START = time.perf_counter()


def say(message: str) -> None:
    print(f"[parity {time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


@contextmanager
def phase(name: str, timings: dict[str, float], message: str | None = None) -> Iterator[None]:
    """Announce a phase and store its duration in `timings[name]` (seconds), even on error."""
    say(message or f"{name} ...")
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 3)
