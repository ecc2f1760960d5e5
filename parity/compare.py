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
    def ident(self) -> tuple[str, str, int | None, str | None]:
        """Unique within one comparison: a tensor name, step and block are recorded once per side, and
        a Req contract check (stage `contract`) is named by the Req field, as a tensor may be."""
        return self.stage, self.tensor, self.step, self.block

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


def _nonfinite_count(t: torch.Tensor) -> tuple[str, str]:
    """`t`'s NaN/Inf count with what they are: "12 NaN/Inf" then "(all NaN)", "(all Inf)" or "(8 NaN, 4 Inf)"."""
    nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
    kinds = f"{nan} NaN, {inf} Inf" if nan and inf else "all NaN" if nan else "all Inf"
    return f"{nan + inf} NaN/Inf", f"({kinds})"


def nonfinite_message(ref: torch.Tensor, port: torch.Tensor) -> str:
    """What a nonfinite check says, the counts first: which side holds NaN/Inf, how many of how many
    elements, and that the distances (max_abs, rel_l2, cosine) cover the elements finite on both
    sides only, so a small max_abs there does not read as a pass."""
    total = ref.numel()
    ref_finite, port_finite = torch.isfinite(ref), torch.isfinite(port)
    ref_ok, port_ok = bool(ref_finite.all()), bool(port_finite.all())
    if ref_ok or port_ok:
        side, other = ("port", "reference") if ref_ok else ("reference", "port")
        count, kinds = _nonfinite_count(port if ref_ok else ref)
        head = f"the {side} has {count} of {total} elements {kinds} where the {other} has none"
    else:
        (port_count, port_kinds), (ref_count, ref_kinds) = _nonfinite_count(port), _nonfinite_count(ref)
        same = torch.equal(ref_finite, port_finite)
        head = (
            f"both sides have NaN/Inf {'at the same places' if same else 'at different places'}: the port "
            f"{port_count} {port_kinds}, the reference {ref_count} {ref_kinds}, of {total} elements"
        )
        if same:  # min_atol is inf, so the non-finite values themselves differ
            head += ", with different values (NaN vs Inf, or Inf of the other sign)"
    finite = int((ref_finite & port_finite).sum())
    return f"{head}; the distances cover only the {finite} elements finite on both sides"


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
        differing = int((ref != port).sum())  # torch's type promotion: int64 ids stay exact beyond 2**53
        detail = f"{differing} of {ref.numel()} elements differ"
        if ref.dtype != port.dtype:
            detail += f"; dtype {ref.dtype} vs {port.dtype}"
        return False, Status.MISMATCH, min_atol, f"expected exact equality: {detail}"
    if math.isinf(min_atol):  # NaN/Inf not at the same places with the same values on both sides
        return False, Status.NONFINITE, min_atol, nonfinite_message(ref, port)
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
    # where the pair's token or channel axis lies (canonical layout), for the evidence that reads one
    axes = evidence.axes(pair.stage, key.tensor, ref.ndim)
    m, min_atol = measured or metrics.compute_batch([(ref, port, 0.0 if tol.exact else tol.rtol)])[0]
    if not m.shape_match:
        msg = f"shape {list(port.shape)} vs reference {list(ref.shape)}"
        return check(False, Status.SHAPE, msg, metrics=m, evidence=evidence.gather(ref, port, **axes))
    passed, status, min_atol, msg = _judge(ref, port, tol, m.rel_l2, min_atol)
    found = {} if passed else evidence.gather(ref, port, **axes)
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
