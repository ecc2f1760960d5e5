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


def compute_batch(items: list[tuple[torch.Tensor, torch.Tensor, float]]) -> list[tuple[Metrics, float]]:
    """(metrics, min passing atol at rtol) for each (reference, port, rtol). Every scalar of every
    pair is computed on the tensors' device and comes back in one transfer per device: a GPU run's
    few hundred checks cost one synchronisation, not a few hundred."""
    results: list[tuple[Metrics, float] | None] = [None] * len(items)
    pending: dict[torch.device, list[tuple[int, Metrics, torch.Tensor]]] = {}
    for i, (reference, port, rtol) in enumerate(items):
        base = _base(reference, port)
        if not base.shape_match:
            counts = dataclasses.replace(
                base, reference_nonfinite=_nonfinite(reference), port_nonfinite=_nonfinite(port)
            )
            results[i] = (counts, math.nan)
        elif reference.numel() == 0:
            results[i] = (base, 0.0)
        else:
            pending.setdefault(reference.device, []).append((i, base, _scalars(reference, port, rtol)))
    for rows in pending.values():
        values = torch.stack([scalars for _, _, scalars in rows]).tolist()
        for (i, base, _), row in zip(rows, values, strict=True):
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


def _scalars(reference: torch.Tensor, port: torch.Tensor, rtol: float) -> torch.Tensor:
    """The pair's scalars as one float64 tensor on its device, with no host synchronisation.
    Non-finite elements are zeroed on both sides rather than indexed out (boolean indexing would
    synchronise)."""
    ref, out = (t.flatten() for t in _as_float64(reference, port))
    ref_finite, out_finite = torch.isfinite(ref), torch.isfinite(out)
    finite = ref_finite & out_finite
    zero = torch.zeros((), dtype=torch.float64, device=ref.device)
    # NaN/Inf at the same places with the same values on both sides, or no atol passes.
    same_nonfinite = ref_finite.eq(out_finite).all() & ((ref == out) | (ref.isnan() & out.isnan()) | ref_finite).all()
    slack = torch.where(ref_finite, (out - ref).abs() - rtol * ref.abs(), zero)
    ref, out = torch.where(finite, ref, zero), torch.where(finite, out, zero)
    diff = out - ref
    count = finite.sum()
    return torch.stack(
        [
            count.to(torch.float64),
            (~ref_finite).sum().to(torch.float64),
            (~out_finite).sum().to(torch.float64),
            torch.linalg.vector_norm(ref),
            torch.linalg.vector_norm(out),
            torch.linalg.vector_norm(diff),
            torch.dot(ref, out),
            diff.abs().max(),
            diff.abs().sum() / count.clamp(min=1),
            same_nonfinite.to(torch.float64),
            slack.max(),
        ]
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


def _as_float64(reference: torch.Tensor, port: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both in float64 on the reference's device: a GPU run's records are compared where they are,
    never all copied to the host."""
    device = reference.device
    return reference.detach().to(device, torch.float64), port.detach().to(device, torch.float64)
