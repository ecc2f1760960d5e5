"""The fp64 referee: is a port that misses the fixed tolerance still numerically equivalent?

For the first failing component (a DiT call or a DiT block, at one step), both libraries'
modules are replayed in float64 on the call they made (the port's in teacher-forced mode, so
both see the reference's inputs). With `ref` the reference's output at the run dtype, `port`
the port's, and `truth` the reference module's float64 output:

    reference error = rel_l2(ref, truth),  port error = rel_l2(port, truth)

RULE: the port is numerically equivalent when port error <= 2 x reference error (torch._dynamo's
`same()` uses the same idea). The port module's own float64 output against `truth` tells a logic
difference (large even in float64) from a precision one (vanishes in float64).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from parity import metrics
from parity.compare import Check
from parity.vocab import Status

FACTOR = 2.0
FP64 = "@fp64"  # suffix of the tensor names of outputs replayed in float64
RULE = (
    f"numerically equivalent when rel_l2(port, ref_fp64) <= {FACTOR:g} x rel_l2(ref, ref_fp64), "
    "where ref_fp64 is the reference module replayed in float64 on the same call"
)


@dataclass
class Judgement:
    tensor: str
    step: int | None
    block: str | None
    reference_error: float
    port_error: float
    port_fp64_vs_reference_fp64: float
    equivalent: bool
    closer: str

    def as_dict(self) -> dict:
        return {**self.__dict__, "rule": RULE}


def judge(
    tensor: str,
    step: int | None,
    block: str | None,
    reference: torch.Tensor,
    port: torch.Tensor,
    reference_fp64: torch.Tensor,
    port_fp64: torch.Tensor,
) -> Judgement:
    ref_error = metrics.compute(reference_fp64, reference).rel_l2
    port_error = metrics.compute(reference_fp64, port).rel_l2
    logic = metrics.compute(reference_fp64, port_fp64).rel_l2
    equivalent = not math.isnan(port_error) and port_error <= FACTOR * ref_error
    closer = "port" if port_error < ref_error else "reference" if ref_error < port_error else "tie"
    return Judgement(tensor, step, block, ref_error, port_error, logic, equivalent, closer)


def apply(checks: tuple[Check, ...], judgement: Judgement) -> tuple[Check, ...]:
    """The checks as the referee leaves them: when the port is equivalent, every failing check of the
    judged component (same tensor and block, any step) becomes a passing `referee_equivalent` one
    (a new Check; the compared ones are not changed)."""
    if not judgement.equivalent:
        return checks
    return tuple(
        dataclasses.replace(
            check,
            passed=True,
            status=Status.REFEREE_EQUIVALENT,
            message=check.message + "; numerically equivalent by the fp64 referee",
        )
        if not check.passed and check.tensor == judgement.tensor and check.block == judgement.block
        else check
        for check in checks
    )
