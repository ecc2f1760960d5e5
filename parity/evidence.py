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
    ref = reference.detach().to(torch.float64).flatten()
    val = port.detach().to(torch.float64).flatten()
    finite = torch.isfinite(ref) & torch.isfinite(val)
    ref, val = ref[finite], val[finite]
    ref_norm = float(torch.linalg.vector_norm(ref))
    if ref.numel() == 0 or ref_norm == 0.0:
        return out
    # port ~ scale * ref: the least-squares scale and what remains after it.
    scale = float(torch.dot(val, ref)) / ref_norm**2
    out["fit_scale"] = scale
    out["rel_l2_after_scale"] = float(torch.linalg.vector_norm(val - scale * ref)) / ref_norm
    # port ~ ref + offset
    offset = float((val - ref).mean())
    out["fit_offset"] = offset
    out["rel_l2_after_offset"] = float(torch.linalg.vector_norm(val - ref - offset)) / ref_norm
    # the same multiset of values, in another order
    same_values = float(torch.linalg.vector_norm(val.sort().values - ref.sort().values)) / ref_norm
    out["rel_l2_sorted"] = same_values
    out["same_values_reordered"] = same_values < 1e-6 and not math.isclose(
        float(torch.linalg.vector_norm(val - ref)), 0.0
    )
    return out
