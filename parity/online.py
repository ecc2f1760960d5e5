"""Online comparison: the two pipelines run in turns, a step or two at a time, and each denoising
step's records are compared and dropped as soon as both sides have made them.

Why: with every block of every step captured, a whole trace grows with steps x blocks (Flux at its
real depth, 1024x1024: 1.6 GB of block outputs per step and side, some 80 GB per side at 50 steps).
Here the records held at any moment are those of the last two steps or so, whatever the step count;
the checks are the same ones the whole traces would give (`align` and `compare` on each step's
records, the last record of a key winning as in a Trace).

How: each side runs in its own thread, but never at the same time as the other. A baton (`Turns`)
passes at the first record of a step the other side has not reached yet, so only one library's
Python runs at any moment: neither sees the other's global state mid-call (SGLang sets torch's SDPA
backend flags around each attention call), and each side finds torch's SDPA flags as it left them.
A GPU still overlaps the two: the side taking the baton queues its kernels while the other's run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from parity import interrupts
from parity.align import align
from parity.compare import Check, compare
from parity.tolerance import Policy
from parity.trace import Record, Trace
from parity.vocab import Side

if TYPE_CHECKING:
    from parity.families.base import FamilyAdapter

SIDES = (Side.REFERENCE, Side.PORT)


class Aborted(Exception):
    """Raised in a side's thread when the other side failed or Ctrl-C was pressed: the run stops at
    its next record; the error reported is the other side's (or the Ctrl-C)."""


def _other(side: Side) -> Side:
    return Side.PORT if side == Side.REFERENCE else Side.REFERENCE


def _sdpa_state() -> tuple | None:
    """torch's process-wide SDPA backend switches and their priority order (None where this torch
    keeps them elsewhere)."""
    try:
        from torch.nn.attention import _backend_names

        flags = tuple(getattr(torch._C, f"_get_{name}_sdp_enabled")() for name in _backend_names)
        return flags, tuple(torch._C._get_sdp_priority_order())
    except (ImportError, AttributeError):
        return None


def _set_sdpa_state(state: tuple | None) -> None:
    if state is None:
        return
    from torch.nn.attention import _backend_names

    flags, priority = state
    for name, enabled in zip(_backend_names, flags, strict=True):
        getattr(torch._C, f"_set_sdp_use_{name}")(enabled)
    torch._C._set_sdp_priority_order(list(priority))


class Turns:
    """The baton: which side may run. The reference starts; a side entering step s hands the baton
    over when the other side has not entered step s yet, and waits for it back (or for the other
    side to finish). Each side's SDPA state is kept across the other's turns."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._turn = Side.REFERENCE
        self._entered: dict[Side, float] = dict.fromkeys(SIDES, -1)  # a finished side: past every step
        self._done: set[Side] = set()
        self._aborted = False
        initial = _sdpa_state()
        self._state: dict[Side, tuple | None] = dict.fromkeys(SIDES, initial)
        self._since = dict.fromkeys(SIDES, 0.0)
        self.seconds = dict.fromkeys(SIDES, 0.0)  # wall time each side held the baton

    def begin(self, side: Side) -> None:
        """Wait for this side's first turn."""
        with self._cond:
            self._wait_for(side)

    def enter_step(self, side: Side, step: int) -> None:
        """`side` is about to record its first record of `step`."""
        with self._cond:
            self.check(side)
            self._entered[side] = step
            other = _other(side)
            if other not in self._done and self._entered[other] < step:
                self._pass(side)
                self._wait_for(side)

    @property
    def entered(self) -> dict[Side, float]:
        """The step each side has entered (-1 before its first; infinity once it finished)."""
        return dict(self._entered)

    def finish(self, side: Side, failed: bool) -> None:
        """`side`'s run ended (`failed`: with an error, which stops the other side too)."""
        with self._cond:
            self._done.add(side)
            self._entered[side] = math.inf
            self._aborted |= failed
            if self._turn == side:
                self._pass(side)

    def abort(self) -> None:
        """Stop both sides at their next record (Ctrl-C in the main thread)."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    @property
    def aborted(self) -> bool:
        return self._aborted

    def check(self, side: Side) -> None:
        """Raise Aborted in `side`'s thread once the run is aborted."""
        if self._aborted:
            raise Aborted(f"{side}: stopped because the other side stopped")

    def _pass(self, side: Side) -> None:
        self.seconds[side] += time.perf_counter() - self._since[side]
        self._state[side] = _sdpa_state()
        self._turn = _other(side)
        self._cond.notify_all()

    def _wait_for(self, side: Side) -> None:
        other = _other(side)
        while self._turn != side and other not in self._done and not self._aborted:
            self._cond.wait()
        self.check(side)
        self._turn = side
        _set_sdpa_state(self._state[side])
        self._since[side] = time.perf_counter()


class OnlineTrace(Trace):
    """One side's trace in an online comparison: records of a denoising step go to the comparison,
    the others (text encoding, latent and timestep preparation, decoded frames) are kept here."""

    def __init__(self, side: Side, device: str, online: OnlineComparison) -> None:
        super().__init__(side, device)
        self._online = online

    def _append(self, record: Record) -> None:
        if record.key.step is None:
            super()._append(record)
        else:
            self._online.take(Side(self.side), record)


class OnlineComparison:
    """Both sides' records of the steps not yet compared, and the checks of those that were."""

    def __init__(self, adapter: FamilyAdapter, policy: Policy, device: str) -> None:
        self.adapter, self.policy, self.device = adapter, policy, device
        self.turns = Turns()
        self.traces = {side: OnlineTrace(side, device, self) for side in SIDES}
        self._pending: dict[Side, dict[int, list[Record]]] = {side: {} for side in SIDES}
        self.checks: list[Check] = []
        self.steps_compared = 0
        self.held_bytes = 0
        self.peak_bytes = 0  # the most record bytes held at once (both sides)

    # -- records, from the side holding the baton -------------------------------------------------

    def take(self, side: Side, record: Record) -> None:
        step = record.key.step
        assert step is not None
        self.turns.check(side)
        if step > self.turns.entered[side]:
            self._compare_ready()  # the other side may have finished a step meanwhile
            self.turns.enter_step(side, step)  # may hand the baton over and wait for it back
            self._compare_ready()
        self._pending[side].setdefault(step, []).append(record)
        self.held_bytes += _nbytes(record)
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)

    def _compare_ready(self) -> None:
        """Compare every step both sides are past (a finished side is past every step)."""
        done = min(self.turns.entered.values())
        for step in sorted({s for side in SIDES for s in self._pending[side] if s < done}):
            self._compare_step(step)

    def _compare_step(self, step: int, partial: bool = False) -> None:
        sides = {side: Trace(side, self.device) for side in SIDES}
        for side in SIDES:
            records = self._pending[side].pop(step, [])
            self.held_bytes -= sum(_nbytes(r) for r in records)
            sides[side].extend(records)
        pairs = align(sides[Side.REFERENCE], sides[Side.PORT], self.adapter)
        if partial:  # a side stopped early: only what both sides made
            pairs = [p for p in pairs if p.reference is not None and p.port is not None]
        self.checks += compare(pairs, self.policy)
        self.steps_compared += 1

    # -- the run, from the main thread ------------------------------------------------------------

    def run(self, calls: Mapping[Side, Callable[[], Any]]) -> dict[Side, Any]:
        """Run each side's call in its own thread, in turns; each side's result. The first error of
        a side (not the other's resulting Aborted) is raised once both threads have ended, after the
        steps both sides made are compared; Ctrl-C stops both at their next record."""
        results: dict[Side, Any] = {}
        errors: list[BaseException] = []

        def worker(side: Side) -> None:
            failed = True
            try:
                self.turns.begin(side)
                results[side] = calls[side]()
                failed = False
            except Aborted:
                pass
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the main thread
                errors.append(exc)
            finally:
                self.turns.finish(side, failed)

        threads = [threading.Thread(target=worker, args=(side,), name=f"parity-{side}") for side in SIDES]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
                    interrupts.checkpoint()
        except BaseException:
            self.turns.abort()
            for thread in threads:
                thread.join()
            raise
        self.finish(partial=bool(errors))
        if errors:
            raise errors[0]
        return results

    def finish(self, partial: bool = False) -> None:
        """Compare what is still held (the last steps; with `partial`, only what both sides made)."""
        for step in sorted({s for side in SIDES for s in self._pending[side]}):
            self._compare_step(step, partial)

    def describe(self) -> dict[str, Any]:
        """For the report: steps compared online and the most record memory held at once."""
        return {
            "steps_compared": self.steps_compared,
            "records_peak_mib": round(self.peak_bytes / 2**20, 1),
            "records_device": self.device,
        }


def _nbytes(record: Record) -> int:
    return record.value.numel() * record.value.element_size()
