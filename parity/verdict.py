"""The run's verdict and the first place the port diverges from the reference."""

from __future__ import annotations

from dataclasses import dataclass

from parity import stages
from parity.compare import Check

PASS, FAIL, ERROR = "pass", "fail", "error"


@dataclass
class Verdict:
    verdict: str
    first_divergence: dict | None
    first_check: Check | None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return {PASS: 0, FAIL: 1, ERROR: 2}[self.verdict]


def first_failure(checks: list[Check]) -> Check | None:
    """The earliest failing check in execution order: canonical stage, then trace order."""
    failing = [c for c in checks if not c.passed]
    if not failing:
        return None
    return min(failing, key=lambda c: (stages.rank(c.stage), c.order))


def decide(checks: list[Check], error: str | None = None) -> Verdict:
    """`error` when a side could not run (or nothing was compared), else `fail` or `pass`."""
    first = first_failure(checks)
    divergence = None
    if first is not None:
        divergence = {
            "stage": first.stage,
            "tensor": first.tensor,
            "step": first.step,
            "block": first.block,
        }
    if error is not None:
        return Verdict(ERROR, divergence, first, error)
    if not checks:
        return Verdict(ERROR, None, None, "nothing was compared: neither side recorded a tensor")
    return Verdict(FAIL if first else PASS, divergence, first)
