"""Distance metrics between a port tensor and its reference (pure torch, no pipeline imports)."""

from __future__ import annotations

import dataclasses
import math
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


def min_passing_atol(reference: torch.Tensor, port: torch.Tensor, rtol: float) -> float:
    """The smallest atol with which |port - ref| <= atol + rtol * |ref| holds everywhere (inf when
    NaN/Inf do not sit at the same places with the same values on both sides)."""
    return compute_batch([(reference, port, rtol)])[0][1]


# Pairs of one shape are stacked and measured together (a GPU run's few hundred checks are a few
# dozen kernel launches, not a few thousand), at most this many elements per stacked side: float64
# copies of both sides and their temporaries stay around a gigabyte.
BATCH_ELEMENTS = 2**24


def compute_batch(items: list[tuple[torch.Tensor, torch.Tensor, float]]) -> list[tuple[Metrics, float]]:
    """(metrics, min passing atol at rtol) for each (reference, port, rtol). Every scalar of every
    pair is computed on the tensors' device and comes back in one transfer per device: a GPU run's
    few hundred checks cost one synchronisation, not a few hundred."""
    results: list[tuple[Metrics, float] | None] = [None] * len(items)
    groups: dict[tuple, list[tuple[int, Metrics]]] = {}
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
            groups.setdefault((reference.device, reference.numel()), []).append((i, base))
    pending: dict[torch.device, list[tuple[list[tuple[int, Metrics]], torch.Tensor]]] = {}
    for (device, numel), members in groups.items():
        size = max(1, BATCH_ELEMENTS // numel)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            pairs = [items[i] for i, _ in chunk]
            reference = torch.stack([_float64(r, device) for r, _, _ in pairs])
            port = torch.stack([_float64(p, device) for _, p, _ in pairs])
            rtol = torch.tensor([[t] for _, _, t in pairs], dtype=torch.float64, device=device)
            pending.setdefault(device, []).append((chunk, _scalars(reference, port, rtol)))
    for chunks in pending.values():
        values = torch.cat([scalars for _, scalars in chunks]).tolist()
        bases = [member for chunk, _ in chunks for member in chunk]
        for (i, base), row in zip(bases, values, strict=True):
            results[i] = _finish(base, row)
    return results  # type: ignore[return-value]


def _base(reference: torch.Tensor, port: torch.Tensor) -> Metrics:
    return Metrics(
        shape_match=tuple(reference.shape) == tuple(port.shape),
        dtype_match=reference.dtype == port.dtype,
        reference_shape=tuple(reference.shape),
        port_shape=tuple(port.shape),
        reference_dtype=str(reference.dtype).removeprefix("torch."),
        port_dtype=str(port.dtype).removeprefix("torch."),
    )


def _scalars(ref: torch.Tensor, out: torch.Tensor, rtol: torch.Tensor) -> torch.Tensor:
    """N x 11 float64 scalars of N stacked, flattened float64 pairs (N x M), with no host
    synchronisation. Non-finite elements are zeroed on both sides rather than indexed out
    (boolean indexing would synchronise)."""
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
        cosine = dot / (ref_norm * out_norm)
    if err_norm == 0.0:
        rel_l2, sqnr = 0.0, math.inf
    elif ref_norm == 0.0:
        rel_l2, sqnr = math.inf, -math.inf
    else:
        rel_l2 = err_norm / ref_norm
        sqnr = 20.0 * math.log10(ref_norm / err_norm)
    extra = {"max_abs": max_abs, "mean_abs": mean_abs, "rel_l2": rel_l2, "cosine": cosine, "sqnr_db": sqnr}
    return Metrics(**{**asdict(base), **extra}), min_atol


def _float64(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Flattened float64 on the reference's device: a GPU run's records are compared where they
    are, never all copied to the host."""
    return t.detach().to(device, torch.float64).flatten()
