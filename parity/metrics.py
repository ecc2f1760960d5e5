"""Distance metrics between a port tensor and its reference (pure torch, no pipeline imports)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Metrics:
    """How far `port` is from `reference`. Floats are NaN where undefined (e.g. shape mismatch)."""

    shape_match: bool
    dtype_match: bool
    reference_shape: tuple[int, ...]
    port_shape: tuple[int, ...]
    reference_dtype: str
    port_dtype: str
    max_abs: float = math.nan
    mean_abs: float = math.nan
    rel_l2: float = math.nan
    cosine: float = math.nan
    sqnr_db: float = math.nan
    reference_nonfinite: int = 0
    port_nonfinite: int = 0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["reference_shape"] = list(self.reference_shape)
        out["port_shape"] = list(self.port_shape)
        return out


def _nonfinite(t: torch.Tensor) -> int:
    if not (t.is_floating_point() or t.is_complex()):
        return 0
    return int((~torch.isfinite(t)).sum())


def compute(reference: torch.Tensor, port: torch.Tensor) -> Metrics:
    """All metrics of `port` against `reference`, computed in float64.

    rel_l2 = ||port - ref|| / ||ref||; sqnr_db = 10 log10(||ref||^2 / ||port - ref||^2)
    (inf when equal); cosine of the flattened tensors (1.0 when both are zero).
    Non-finite elements are counted and excluded from the distances.
    """
    return compute_batch([(reference, port, 0.0)])[0][0]


# Pairs of one size are stacked and measured together (a GPU run's few hundred checks are a few
# dozen kernel launches, not a few thousand), at most this many elements per stacked side: float64
# copies of both sides and their temporaries stay around a gigabyte.
BATCH_ELEMENTS = 2**24


def compute_batch(items: list[tuple[torch.Tensor, torch.Tensor, float]]) -> list[tuple[Metrics, float]]:
    """(metrics, min passing atol at rtol) for each (reference, port, rtol). Every scalar of every
    pair is computed on the tensors' device and comes back in one transfer per device: a GPU run's
    few hundred checks cost one synchronisation, not a few hundred.

    All pairs are measured with the finite-only formulas first (a third of the memory traffic);
    the pairs that turn out to hold NaN/Inf are measured again with the masked ones."""
    results: list[tuple[Metrics, float] | None] = [None] * len(items)
    bases: dict[int, Metrics] = {}
    for i, (reference, port, _) in enumerate(items):
        base = _base(reference, port)
        if not base.shape_match:
            counts = dataclasses.replace(
                base, reference_nonfinite=_nonfinite(reference), port_nonfinite=_nonfinite(port)
            )
            results[i] = (counts, math.nan)
        elif reference.numel() == 0:
            results[i] = (base, 0.0)
        else:
            bases[i] = base
    rows = _measure(items, list(bases), _finite_scalars)
    # A NaN or Inf anywhere makes that side's norm NaN/Inf (squares of float32 values cannot overflow
    # float64), so the finite-only pass finds those pairs for free.
    nonfinite = [i for i, row in rows.items() if not (math.isfinite(row[3]) and math.isfinite(row[4]))]
    rows.update(_measure(items, nonfinite, _masked_scalars))
    for i, row in rows.items():
        results[i] = _finish(bases[i], row)
    return results  # type: ignore[return-value]


Scalars = Callable[[torch.Tensor, float], torch.Tensor]
# The norms' identity for the dot product loses about eps x (ratio + 1/ratio) of |ref| |out|, where
# ratio = |ref| / |out|: 1e-12 of the cosine at a ratio of 1e4, where the direct product takes over.
DOT_FROM_NORMS = 1e4


def _measure(items: list[tuple[torch.Tensor, torch.Tensor, float]], which: list[int], scalars: Scalars) -> dict:
    """{item index: its 11 scalars} for the items `which`, stacked in groups of one device, size and
    rtol, each group's scalars computed with no synchronisation; one transfer per device."""
    groups: dict[tuple, list[int]] = {}
    for i in which:
        reference, _, rtol = items[i]
        groups.setdefault((reference.device, reference.numel(), rtol), []).append(i)
    pending: dict[torch.device, list[tuple[list[int], torch.Tensor]]] = {}
    for (device, numel, rtol), members in groups.items():
        size = max(1, BATCH_ELEMENTS // numel)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            pairs = _stacked([items[i][:2] for i in chunk], device)
            pending.setdefault(device, []).append((chunk, scalars(pairs, rtol)))
    rows: dict[int, list[float]] = {}
    for chunks in pending.values():
        values = torch.cat([found for _, found in chunks]).tolist()
        rows.update(zip([i for chunk, _ in chunks for i in chunk], values, strict=True))
    return rows


def _stacked(pairs: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> torch.Tensor:
    """N x 2 x M float64 (reference, port) on the reference's device (a GPU run's records are
    compared where they are, never copied to the host), converted and copied in one pass per tensor."""
    out = torch.empty((len(pairs), 2, pairs[0][0].numel()), dtype=torch.float64, device=device)
    for rows, pair in zip(out, pairs, strict=True):
        for row, tensor in zip(rows, pair, strict=True):
            row.copy_(tensor.detach().reshape(-1))
    return out


def _base(reference: torch.Tensor, port: torch.Tensor) -> Metrics:
    return Metrics(
        shape_match=tuple(reference.shape) == tuple(port.shape),
        dtype_match=reference.dtype == port.dtype,
        reference_shape=tuple(reference.shape),
        port_shape=tuple(port.shape),
        reference_dtype=str(reference.dtype).removeprefix("torch."),
        port_dtype=str(port.dtype).removeprefix("torch."),
    )


def _finite_scalars(pairs: torch.Tensor, rtol: float) -> torch.Tensor:
    """The 11 scalars of N stacked pairs (N x 2 x M float64) that hold no NaN/Inf (a pair that does
    shows a non-finite norm and is measured again by `_masked_scalars`). Few passes over the data
    and no product tensor. The dot product comes from the three norms,
    ref.out = (|ref|^2 + |out|^2 - |out - ref|^2) / 2, exact for equal tensors and accurate while the
    two norms are within DOT_FROM_NORMS of each other; beyond that the identity cancels
    catastrophically (a port of norm 3e-17 against a reference of 0.13 got a cosine of 0.5), so those
    pairs take a batched matrix product of the rows. Overwrites `pairs`."""
    ref, out = pairs[:, 0], pairs[:, 1]
    ref_norm, out_norm = torch.linalg.vector_norm(ref, dim=1), torch.linalg.vector_norm(out, dim=1)
    direct = torch.bmm(ref.unsqueeze(1), out.unsqueeze(2)).view(-1)
    balanced = (ref_norm <= DOT_FROM_NORMS * out_norm) & (out_norm <= DOT_FROM_NORMS * ref_norm)
    diff = out - ref
    err_norm = torch.linalg.vector_norm(diff, dim=1)
    low, high = torch.aminmax(diff, dim=1)
    count = torch.full_like(ref_norm, float(ref.shape[1]))
    if rtol:  # worst |out - ref| - rtol |ref|, in place in the stacked copy (no longer needed)
        slack = torch.add(diff.abs_(), ref.abs_(), alpha=-rtol, out=out).amax(dim=1)
    else:
        slack = torch.maximum(high, -low)
    zero = torch.zeros_like(count)
    return torch.stack(
        [
            count,
            zero,  # non-finite elements of the reference
            zero,  # ... and of the port
            ref_norm,
            out_norm,
            err_norm,
            torch.where(balanced, (ref_norm * ref_norm + out_norm * out_norm - err_norm * err_norm) / 2, direct),
            torch.maximum(high, -low),
            torch.linalg.vector_norm(diff, ord=1, dim=1) / count,
            torch.ones_like(count),  # NaN/Inf (none) at the same places on both sides
            slack,
        ],
        dim=1,
    )


def _masked_scalars(pairs: torch.Tensor, rtol: float) -> torch.Tensor:
    """The 11 scalars of N stacked pairs (N x 2 x M float64) where NaN/Inf may occur. Non-finite
    elements are zeroed on both sides rather than indexed out (boolean indexing would synchronise)."""
    ref, out = pairs[:, 0], pairs[:, 1]
    ref_finite, out_finite = torch.isfinite(ref), torch.isfinite(out)
    finite = ref_finite & out_finite
    # NaN/Inf at the same places with the same values on both sides, or no atol passes.
    same_place = ref_finite.eq(out_finite).all(dim=1)
    same_value = ((ref == out) | (ref.isnan() & out.isnan()) | ref_finite).all(dim=1)
    slack = torch.where(ref_finite, (out - ref).abs() - rtol * ref.abs(), 0.0)
    ref, out = torch.where(finite, ref, 0.0), torch.where(finite, out, 0.0)
    diff = out - ref
    abs_diff = diff.abs()
    count = finite.sum(dim=1).to(torch.float64)
    return torch.stack(
        [
            count,
            (~ref_finite).sum(dim=1).to(torch.float64),
            (~out_finite).sum(dim=1).to(torch.float64),
            torch.linalg.vector_norm(ref, dim=1),
            torch.linalg.vector_norm(out, dim=1),
            torch.linalg.vector_norm(diff, dim=1),
            (ref * out).sum(dim=1),
            abs_diff.amax(dim=1),
            abs_diff.sum(dim=1) / count.clamp(min=1),
            (same_place & same_value).to(torch.float64),
            slack.amax(dim=1),
        ],
        dim=1,
    )


def _finish(base: Metrics, row: list[float]) -> tuple[Metrics, float]:
    n, ref_bad, out_bad, ref_norm, out_norm, err_norm, dot, max_abs, mean_abs, agrees, worst = row
    base = dataclasses.replace(base, reference_nonfinite=int(ref_bad), port_nonfinite=int(out_bad))
    min_atol = max(0.0, worst) if agrees else math.inf
    if n == 0:
        return base, min_atol
    if ref_norm == 0.0 and out_norm == 0.0:
        cosine = 1.0
    elif ref_norm == 0.0 or out_norm == 0.0:
        cosine = 0.0
    else:
        cosine = max(-1.0, min(1.0, dot / (ref_norm * out_norm)))  # rounding may step just past +-1
    if err_norm == 0.0:
        rel_l2, sqnr = 0.0, math.inf
    elif ref_norm == 0.0:
        rel_l2, sqnr = math.inf, -math.inf
    else:
        rel_l2 = err_norm / ref_norm
        sqnr = 20.0 * math.log10(ref_norm / err_norm)
    extra = {"max_abs": max_abs, "mean_abs": mean_abs, "rel_l2": rel_l2, "cosine": cosine, "sqnr_db": sqnr}
    return Metrics(**{**asdict(base), **extra}), min_atol
