"""Distance metrics between a port tensor and its reference (pure torch, no pipeline imports)."""

from __future__ import annotations

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


def _same_nonfinite(ref: torch.Tensor, out: torch.Tensor) -> bool:
    """True when NaNs and infinities sit at the same places with the same values on both sides."""
    ref_bad, out_bad = ~torch.isfinite(ref), ~torch.isfinite(out)
    if not torch.equal(ref_bad, out_bad):
        return False
    a, b = ref[ref_bad], out[out_bad]
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


def compute(reference: torch.Tensor, port: torch.Tensor) -> Metrics:
    """All metrics of `port` against `reference`, computed in float64.

    rel_l2 = ||port - ref|| / ||ref||; sqnr_db = 10 log10(||ref||^2 / ||port - ref||^2)
    (inf when equal); cosine of the flattened tensors (1.0 when both are zero).
    Non-finite elements are counted and excluded from the distances.
    """
    base = Metrics(
        shape_match=tuple(reference.shape) == tuple(port.shape),
        dtype_match=reference.dtype == port.dtype,
        reference_shape=tuple(reference.shape),
        port_shape=tuple(port.shape),
        reference_dtype=str(reference.dtype).removeprefix("torch."),
        port_dtype=str(port.dtype).removeprefix("torch."),
        reference_nonfinite=_nonfinite(reference),
        port_nonfinite=_nonfinite(port),
    )
    if not base.shape_match:
        return base
    ref = reference.detach().to("cpu", torch.float64).flatten()
    out = port.detach().to("cpu", torch.float64).flatten()
    finite = torch.isfinite(ref) & torch.isfinite(out)
    ref, out = ref[finite], out[finite]
    if ref.numel() == 0:
        return base
    diff = out - ref
    ref_norm = float(torch.linalg.vector_norm(ref))
    out_norm = float(torch.linalg.vector_norm(out))
    err_norm = float(torch.linalg.vector_norm(diff))
    if ref_norm == 0.0 and out_norm == 0.0:
        cosine = 1.0
    elif ref_norm == 0.0 or out_norm == 0.0:
        cosine = 0.0
    else:
        cosine = float(torch.dot(ref, out)) / (ref_norm * out_norm)
    if err_norm == 0.0:
        rel_l2, sqnr = 0.0, math.inf
    elif ref_norm == 0.0:
        rel_l2, sqnr = math.inf, -math.inf
    else:
        rel_l2 = err_norm / ref_norm
        sqnr = 20.0 * math.log10(ref_norm / err_norm)
    return Metrics(
        **{
            **asdict(base),
            "max_abs": float(diff.abs().max()),
            "mean_abs": float(diff.abs().mean()),
            "rel_l2": rel_l2,
            "cosine": cosine,
            "sqnr_db": sqnr,
        }
    )


def min_passing_atol(reference: torch.Tensor, port: torch.Tensor, rtol: float) -> float:
    """The smallest atol with which |port - ref| <= atol + rtol * |ref| holds everywhere."""
    ref = reference.detach().to("cpu", torch.float64)
    out = port.detach().to("cpu", torch.float64)
    if ref.numel() == 0:
        return 0.0
    if not _same_nonfinite(ref, out):
        return math.inf  # a NaN/Inf that the other side does not have: no atol passes
    keep = torch.isfinite(ref)
    ref, out = ref[keep], out[keep]
    if ref.numel() == 0:
        return 0.0
    slack = (out - ref).abs() - rtol * ref.abs()
    return max(0.0, float(slack.max()))
