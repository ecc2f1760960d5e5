"""Judge each aligned pair against the tolerance policy; one Check per compared tensor."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from parity import evidence, metrics, stages
from parity.align import Pair
from parity.tolerance import Policy, Tolerance
from parity.vocab import Role, Status


@dataclass(frozen=True, eq=False)
class Check:
    """One compared tensor, judged once and never changed afterwards: what a run makes of it (its
    role, a referee's judgement) lives in the verdict, or in a new Check (`dataclasses.replace`)."""

    stage: str
    tensor: str
    step: int | None
    block: str | None
    passed: bool
    status: Status
    tolerance: Tolerance
    metrics: metrics.Metrics | None = None
    min_atol: float = math.nan  # smallest atol that would have passed, at the tolerance's rtol
    message: str = ""
    order: int = 0  # position of the pair (reference trace order, then port-only keys)
    evidence: dict = field(default_factory=dict)  # numbers the hints read (see evidence.py)

    @property
    def ident(self) -> tuple[str, int | None, str | None]:
        """Unique within one comparison: a tensor name, step and block are recorded once per side."""
        return self.tensor, self.step, self.block

    def where(self) -> dict:
        """Where the check sits in the run, as report.json's `first_divergence` and `causes` name it."""
        return {"stage": self.stage, "tensor": self.tensor, "step": self.step, "block": self.block}

    def execution_key(self) -> tuple:
        return stages.execution_key(self.stage, self.step, self.tensor, self.block, self.order)

    def label(self) -> str:
        parts = [f"{self.stage}/{self.tensor}"]
        parts += [f"step {self.step}"] if self.step is not None else []
        parts += [f"block {self.block}"] if self.block is not None else []
        return " ".join(parts)

    def row(self, role: Role | None = None) -> dict:
        """A flat dict: one line of checks.csv, one element of report.json's `checks`; `role` is
        the verdict's (parity.verdict.Verdict.role)."""
        row: dict[str, Any] = {
            "stage": self.stage,
            "tensor": self.tensor,
            "step": self.step,
            "block": self.block,
            "passed": self.passed,
            "status": self.status,
            "tolerance": self.tolerance.describe(),
            "atol": None if self.tolerance.exact else self.tolerance.atol,
            "rtol": None if self.tolerance.exact else self.tolerance.rtol,
            "max_rel_l2": self.tolerance.rel_l2,
            "tolerance_source": self.tolerance.source,
            "min_atol": None if math.isnan(self.min_atol) else self.min_atol,
            "message": self.message,
            "role": role,
        }
        if self.metrics is not None:
            row.update(self.metrics.as_dict())
        row["evidence"] = self.evidence
        return row


def _judge(
    ref: torch.Tensor, port: torch.Tensor, tol: Tolerance, rel_l2: float, min_atol: float
) -> tuple[bool, Status, float, str]:
    """(passed, status, min_atol, message) for one pair of tensors of equal shape; `min_atol` is the
    smallest atol that passes at the tolerance's rtol (0 for exact kinds)."""
    if tol.exact:
        same = ref.dtype == port.dtype and torch.equal(ref, port)
        if same:
            return True, Status.OK, 0.0, ""
        if not (ref.is_floating_point() or port.is_floating_point()):
            min_atol = float((ref.long() - port.long()).abs().max()) if ref.numel() else 0.0
        differing = int((ref.to(torch.float64) != port.to(torch.float64)).sum())
        detail = f"{differing} of {ref.numel()} elements differ"
        if ref.dtype != port.dtype:
            detail += f"; dtype {ref.dtype} vs {port.dtype}"
        return False, Status.MISMATCH, min_atol, f"expected exact equality: {detail}"
    if math.isinf(min_atol):
        return False, Status.NONFINITE, min_atol, "NaN/Inf where the reference has none (or vice versa)"
    problems = []
    if min_atol > tol.atol:
        problems.append(f"exceeds atol={tol.atol:.3g} at rtol={tol.rtol:.3g}; atol={min_atol:.3g} would have passed")
    if tol.rel_l2 is not None and rel_l2 > tol.rel_l2:
        problems.append(f"rel_l2={rel_l2:.3g} exceeds {tol.rel_l2:.3g}; rel_l2<={rel_l2:.3g} would have passed")
    if problems:
        return False, Status.MISMATCH, min_atol, "; ".join(problems)
    return True, Status.OK, min_atol, ""


def compare_pair(
    pair: Pair, policy: Policy, order: int = 0, measured: tuple[metrics.Metrics, float] | None = None
) -> Check:
    """One check; `measured` = (metrics, min passing atol) when `compare` computed them in a batch."""
    key = pair.key
    tol = policy.for_tensor(pair.stage, key.tensor)

    def check(passed: bool, status: Status, message: str, **found: Any) -> Check:
        return Check(
            pair.stage, key.tensor, key.step, key.block, passed, status, tol, message=message, order=order, **found
        )

    if pair.port is None or pair.reference is None:
        status = Status.MISSING_PORT if pair.port is None else Status.MISSING_REFERENCE
        side = "port" if pair.port is None else "reference"
        return check(False, status, f"the {side} produced no {key.label()}", metrics=None)
    ref, port = pair.reference, pair.port
    m, min_atol = measured or metrics.compute_batch([(ref, port, 0.0 if tol.exact else tol.rtol)])[0]
    if not m.shape_match:
        msg = f"shape {list(port.shape)} vs reference {list(ref.shape)}"
        return check(False, Status.SHAPE, msg, metrics=m, evidence=evidence.gather(ref, port))
    passed, status, min_atol, msg = _judge(ref, port, tol, m.rel_l2, min_atol)
    found = {} if passed else evidence.gather(ref, port)
    return check(passed, status, msg, metrics=m, min_atol=min_atol, evidence=found)


def compare(pairs: list[Pair], policy: Policy) -> list[Check]:
    """Every pair's check; the metrics of all pairs with both sides are computed in one batch."""
    both, items = [], []
    for order, pair in enumerate(pairs):
        if pair.reference is not None and pair.port is not None:
            tol = policy.for_tensor(pair.stage, pair.key.tensor)
            both.append(order)
            items.append((pair.reference, pair.port, 0.0 if tol.exact else tol.rtol))
    measured = dict(zip(both, metrics.compute_batch(items), strict=True))
    return [compare_pair(pair, policy, order, measured.get(order)) for order, pair in enumerate(pairs)]
