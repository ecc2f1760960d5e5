"""The online comparison (parity.online) on synthetic sides: two threads that record like pipelines,
a step at a time. It must give the checks whole traces give, never let both sides run at once, hold
only a few steps of records whatever the step count, and stop both sides when one fails."""

from __future__ import annotations

import threading

import pytest
import torch

from parity import stages
from parity.align import align
from parity.compare import compare
from parity.families.flux import FLUX
from parity.online import Aborted, OnlineComparison, Turns
from parity.tolerance import Policy
from parity.trace import Trace
from parity.vocab import Side

BLOCKS = 6
ELEMENTS = 1000  # float32: 4000 bytes per record


def record_run(trace: Trace, steps: int, drift: float = 0.0) -> None:
    """What a pipeline records: text encoding, then per step the DiT input, its blocks, its output and
    the latents, then the frames; every value seeded by its key, so both sides record the same values
    (`drift`: from step 2 on, block i is scaled by 1 + drift * (i + 1))."""

    def add(name: str, stage: str, step: int | None = None, block: str | None = None) -> None:
        value = torch.randn(ELEMENTS, generator=torch.Generator().manual_seed(hash((name, step, block)) % 2**31))
        if step is not None and block is not None and step >= 2:
            value = value * (1 + drift * (int(block.split(".")[1]) + 1))
        trace.add(name, stage, value, step=step, block=block)

    add("prompt_embeds", stages.TEXT_ENCODING)
    for step in range(steps):
        add("dit_input", stages.DENOISING, step)
        for index in range(BLOCKS):
            add("hidden_states", stages.DENOISING, step, f"transformer_blocks.{index}")
        add("noise_pred", stages.DENOISING, step)
        add("latents", stages.DENOISING, step)
    add("frames", stages.DECODING)


class Exclusive:
    """Counts the sides running at once: a side runs from its start to its first record, and from
    each record's return to its next record (a side waits for the baton inside a record)."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1

    def wrap(self, trace: Trace) -> None:
        original = trace.add

        def add(*args, **kwargs):
            self.leave()
            try:
                return original(*args, **kwargs)
            finally:
                self.enter()

        trace.add = add  # type: ignore[method-assign]


def batch_checks(steps: int, drift: float) -> list[tuple]:
    traces = {}
    for side in (Side.REFERENCE, Side.PORT):
        traces[side] = Trace(side)
        record_run(traces[side], steps, drift if side == Side.PORT else 0.0)
    checks = compare(align(traces[Side.REFERENCE], traces[Side.PORT], FLUX), Policy("float32"))
    return sorted((c.tensor, c.step, c.block, c.passed, c.metrics.rel_l2 if c.metrics else None) for c in checks)


def online_run(steps: int, drift: float = 0.0, fail_at: tuple[Side, int] | None = None):
    comparison = OnlineComparison(FLUX, Policy("float32"), "cpu")
    # Each side's run: it holds the baton from its first record to the next step the other side lacks.
    exclusive = Exclusive()

    def call(side: Side):
        trace = comparison.traces[side]
        exclusive.wrap(trace)

        def run() -> str:
            original_add = trace.add

            def add(name, stage, value, **kw):
                if fail_at is not None and side == fail_at[0] and kw.get("step") == fail_at[1]:
                    raise RuntimeError(f"{side} broke at step {fail_at[1]}")
                return original_add(name, stage, value, **kw)

            trace.add = add  # type: ignore[method-assign]
            exclusive.enter()
            try:
                record_run(trace, steps, drift if side == Side.PORT else 0.0)
            finally:
                exclusive.leave()
            return f"{side} done"

        return run

    return comparison, exclusive, {side: call(side) for side in (Side.REFERENCE, Side.PORT)}


@pytest.mark.parametrize("drift", [0.0, 1e-3])
def test_online_checks_equal_whole_trace_checks(drift: float) -> None:
    comparison, exclusive, calls = online_run(5, drift)
    results = comparison.run(calls)
    assert results == {Side.REFERENCE: "reference done", Side.PORT: "port done"}
    found = (
        compare(align(comparison.traces[Side.REFERENCE], comparison.traces[Side.PORT], FLUX), Policy("float32"))
        + comparison.checks
    )
    rows = sorted((c.tensor, c.step, c.block, c.passed, c.metrics.rel_l2 if c.metrics else None) for c in found)
    assert rows == batch_checks(5, drift)
    assert any(not passed for *_, passed, _ in rows) == (drift > 0)
    assert comparison.steps_compared == 5
    # the step-stamped records went to the comparison, not the traces
    assert [r.key.tensor for r in comparison.traces[Side.PORT]] == ["prompt_embeds", "frames"]


def test_the_sides_never_run_at_once() -> None:
    comparison, exclusive, calls = online_run(8)
    comparison.run(calls)
    assert exclusive.most == 1


@pytest.mark.parametrize("steps", [4, 40])
def test_records_held_stay_a_few_steps_whatever_the_step_count(steps: int) -> None:
    comparison, _, calls = online_run(steps)
    comparison.run(calls)
    per_step = (BLOCKS + 3) * ELEMENTS * 4
    assert comparison.held_bytes == 0
    assert per_step <= comparison.peak_bytes <= 4 * per_step  # two steps of each side at most


def test_a_failing_side_stops_the_other_and_its_error_is_raised() -> None:
    comparison, _, calls = online_run(10, fail_at=(Side.PORT, 3))
    with pytest.raises(RuntimeError, match="port broke at step 3"):
        comparison.run(calls)
    # The port made steps 0-2 and the reference, a turn behind, steps 0-1 when the port broke: the
    # steps both made were compared, and the reference stopped at its next record instead of running on.
    assert sorted({c.step for c in comparison.checks}) == [0, 1]
    assert all(c.metrics is not None for c in comparison.checks)  # no missing-side checks: a partial finish


def test_turns_hand_over_at_a_step_the_other_side_lacks() -> None:
    turns = Turns()
    order: list[tuple[str, int]] = []

    def side_run(side: Side) -> None:
        turns.begin(side)
        for step in range(3):
            turns.enter_step(side, step)
            order.append((str(side), step))
        turns.finish(side, failed=False)

    threads = [threading.Thread(target=side_run, args=(s,)) for s in (Side.REFERENCE, Side.PORT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # the reference enters step 0 and hands over; the port runs step 0 and hands back at step 1; then
    # each side runs two steps per turn
    assert order == [("port", 0), ("reference", 0), ("reference", 1), ("port", 1), ("port", 2), ("reference", 2)]


def test_an_aborted_run_raises_in_the_waiting_side() -> None:
    turns = Turns()
    turns.begin(Side.REFERENCE)
    caught: list[BaseException] = []

    def port() -> None:
        try:
            turns.begin(Side.PORT)
        except Aborted as exc:
            caught.append(exc)

    thread = threading.Thread(target=port)
    thread.start()
    turns.finish(Side.REFERENCE, failed=True)
    thread.join(10)
    assert caught and isinstance(caught[0], Aborted)
