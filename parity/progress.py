"""Progress lines on stderr for long phases, and wall-clock timings for the report.

Besides the phase lines (`say`), each side's denoising steps as the recorder counts them (`step`): on a
terminal one line rewritten in place with `\\r` (both sides on it while they run in turns, the online
comparison), in a log one line per completed step, never one per callback. `quiet` (`parity run -q`)
silences both; errors are the CLI's to print.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from parity import interrupts
from parity.vocab import Side

_START = time.perf_counter()
_console: TextIO | None = None  # where progress lines go; None: sys.stderr (parity.library_output sets it)
quiet = False  # `parity run -q`
LABELS: dict[str, str] = {Side.REFERENCE: "Diffusers (reference)", Side.PORT: "SGLang (port)"}


def use_console(stream: TextIO | None) -> TextIO | None:
    """Send progress lines to `stream` (None: sys.stderr); returns the previous one."""
    global _console
    previous, _console = _console, stream
    return previous


def stamp(elapsed: float) -> str:
    return f"[parity {elapsed:7.1f}s]"


def say(message: str) -> None:
    interrupts.checkpoint()  # a progress line is a safe point for Ctrl-C (parity.interrupts)
    if not quiet:
        stream = _console or sys.stderr
        with _lock:
            stream.write(_steps.close())  # a step line rewritten in place ends here
        print(f"{stamp(time.perf_counter() - _START)} {message}", file=stream, flush=True)


@contextmanager
def phase(name: str, timings: dict[str, float], message: str | None = None) -> Iterator[None]:
    """Announce a phase and store its duration in `timings[name]` (seconds), even on error."""
    say(message or f"{name} ...")
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 3)


class StepLine:
    """The step counts of the runs in progress, as the text to write (pure: no I/O, no clock).

    `update` after each completed step: on a terminal (`tty`) "\\r" and one line holding every side that
    has counted since the last `close` (it only grows: the stamp is fixed-width, counts only rise), elsewhere
    a whole line for that side; nothing when the count did not change. `close` ends an in-place line and
    forgets the counts: the next phase line starts on a line of its own and the next run counts afresh.
    """

    def __init__(self) -> None:
        self.counts: dict[str, str] = {}
        self.open = False  # an in-place line is on the terminal, not yet ended

    def update(self, label: str, step: int, total: int, elapsed: float, tty: bool) -> str:
        # Some pipelines run more scheduler steps than the case's `steps` (a pyramid's stages): no "5/4".
        count = f"step {step}/{total}" if 0 < total and step <= total else f"step {step}"
        if self.counts.get(label) == count:
            return ""
        self.counts[label] = count
        if not tty:
            return f"{stamp(elapsed)} {label} {count}\n"
        self.open = True
        return f"\r{stamp(elapsed)} " + " · ".join(f"{name} {done}" for name, done in self.counts.items())

    def close(self) -> str:
        ended = "\n" if self.open else ""
        self.counts.clear()
        self.open = False
        return ended


_steps = StepLine()
_lock = threading.Lock()  # online comparison: each side's steps come from its own thread


def step(side: str, done: int, total: int) -> None:
    """`side` ("reference", "port") completed denoising step `done` (1-based) of `total`."""
    if quiet:
        return
    stream = _console or sys.stderr
    with _lock:
        label = LABELS.get(side, side)  # a Side is its string
        text = _steps.update(label, done, total, time.perf_counter() - _START, _isatty(stream))
        if text:
            stream.write(text)
            stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False
