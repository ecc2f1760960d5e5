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
    causes: list[dict] | None = None

    @property
    def exit_code(self) -> int:
        return {PASS: 0, FAIL: 1, ERROR: 2}[self.verdict]


def _feeds(earlier: str, later: str) -> bool:
    """Whether a tensor of stage `earlier` is an input (directly or not) of stage `later`.

    Text encoding, latent preparation and timestep preparation are independent roots;
    denoising consumes all three and decoding consumes denoising.
    """
    return earlier == later or stages.rank(later) >= stages.rank(stages.DENOISING)


def classify(checks: list[Check], isolated: bool = False) -> list[Check]:
    """Mark each failing check as a `cause` or as `downstream` of an earlier failure it depends
    on; returns the causes in execution order (the first one is the first divergence).
    In isolated mode every component ran on the reference's inputs: each failure is a cause."""
    failing = sorted((c for c in checks if not c.passed), key=Check.execution_key)
    causes: list[Check] = []
    for i, check in enumerate(failing):
        upstream = not isolated and any(_feeds(earlier.stage, check.stage) for earlier in failing[:i])
        check.role = "downstream" if upstream else "cause"
        if not upstream:
            causes.append(check)
    return causes


def where(check: Check) -> dict:
    return {"stage": check.stage, "tensor": check.tensor, "step": check.step, "block": check.block}


def decide(checks: list[Check], error: str | None = None, isolated: bool = False) -> Verdict:
    """`error` when a side could not run (or nothing was compared), else `fail` or `pass`."""
    causes = classify(checks, isolated)
    first = causes[0] if causes else None
    divergence = where(first) if first else None
    listed = [where(c) for c in causes]
    if error is not None:
        return Verdict(ERROR, divergence, first, error, listed)
    if not checks:
        return Verdict(ERROR, None, None, "nothing was compared: neither side recorded a tensor", [])
    return Verdict(FAIL if first else PASS, divergence, first, None, listed)
