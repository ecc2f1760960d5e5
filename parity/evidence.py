"""Evidence about *how* a port tensor differs from its reference, for the hints.

Computed only for failing pairs. Each number answers one question a porting bug leaves a
trace in: is the port a scaled copy (x1000, a wrong scaling factor)? an offset copy (a dropped
shift)? the same values in another order (packing, transposed axes)?
"""

from __future__ import annotations

import math

import torch


def gather(reference: torch.Tensor, port: torch.Tensor) -> dict[str, float | bool]:
    out: dict[str, float | bool] = {}
    if reference.numel() == 0 or reference.shape != port.shape:
        if reference.ndim == port.ndim == 1:
            out["length_difference"] = port.shape[0] - reference.shape[0]
        return out
    out |= _rounding(reference.detach(), port.detach())
    ref = reference.detach().to(torch.float64).flatten()
    val = port.detach().to(torch.float64).flatten()
    # NaN/Inf zeroed on both sides rather than indexed out, and every sum brought back in one transfer:
    # on a GPU an online run gathers this for each failing block while the pipelines run.
    finite = torch.isfinite(ref) & torch.isfinite(val)
    ref, val = torch.where(finite, ref, 0.0), torch.where(finite, val, 0.0)
    diff = val - ref
    sums = [finite.sum().to(torch.float64), ref @ ref, val @ val, val @ ref, diff.sum(), diff @ diff]
    if ref.numel() <= SORTED_AT_MOST:
        sums.append(torch.linalg.vector_norm(val.sort().values - ref.sort().values))
    n, ref_sq, val_sq, dot, diff_sum, diff_sq, *sorted_norm = torch.stack(sums).tolist()
    if n == 0 or ref_sq == 0.0:
        return out
    ref_norm = math.sqrt(ref_sq)
    # port ~ scale * ref: the least-squares scale and what remains after it (|val|^2 - dot^2 / |ref|^2).
    scale = dot / ref_sq
    out["fit_scale"] = scale
    out["rel_l2_after_scale"] = math.sqrt(max(0.0, val_sq - dot * scale)) / ref_norm
    # port ~ ref + offset (the mean difference over the finite elements)
    offset = diff_sum / n
    out["fit_offset"] = offset
    out["rel_l2_after_offset"] = math.sqrt(max(0.0, diff_sq - diff_sum * offset)) / ref_norm
    # the same multiset of values, in another order (sorting is left out for block-sized tensors)
    if sorted_norm:
        same_values = sorted_norm[0] / ref_norm
        out["rel_l2_sorted"] = same_values
        out["same_values_reordered"] = same_values < 1e-6 and diff_sq > 0.0
    return out


# Sorting both sides is the costly part: done for tensors up to this size (initial latents of an image
# or a short video), not for a real-width block's output (Flux at 1024x1024: 14 M elements).
SORTED_AT_MOST = 2**22


# A few numbers (a timestep, a guidance value) that differ only by one side's rounding to a half dtype.
_ROUNDED_AT_MOST = 64


def _rounding(reference: torch.Tensor, port: torch.Tensor) -> dict[str, float | bool]:
    """Whether one side is exactly the other rounded to bfloat16 or float16 (small tensors only)."""
    out: dict[str, float | bool] = {}
    if reference.numel() > _ROUNDED_AT_MOST or not (reference.is_floating_point() and port.is_floating_point()):
        return out
    ref, val = reference.double(), port.double()
    if torch.equal(ref, val):
        return out
    for dtype in (torch.bfloat16, torch.float16):
        name = str(dtype).removeprefix("torch.")
        if torch.equal(val.to(dtype).double(), ref):
            out[f"reference_is_port_rounded_to_{name}"] = True
        if torch.equal(ref.to(dtype).double(), val):
            out[f"port_is_reference_rounded_to_{name}"] = True
        both = torch.equal(ref.to(dtype).double(), ref) and torch.equal(val.to(dtype).double(), val)
        if both:  # both sides hold numbers of this dtype: how many of its steps (ulps) apart
            ulp = torch.finfo(dtype).eps * torch.exp2(torch.floor(torch.log2(ref.abs().clamp(min=1e-30))))
            out[f"ulps_{name}"] = float(((val - ref).abs() / ulp).max())
    return out
