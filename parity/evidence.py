"""Evidence about *how* a port tensor differs from its reference, for the hints.

Computed only for failing pairs. Each number answers one question a porting bug leaves a
trace in: is the port a scaled copy (x1000, a wrong scaling factor)? an offset copy (a dropped
shift)? the same values in another order (packing, transposed axes)? the same tokens, shifted
or cut at another length (a chat-template drop index, BOS, padding)? a per-channel affine copy
(latents_mean / latents_std swapped or inverted)?
"""

from __future__ import annotations

import math

import torch

from parity import stages

Evidence = dict[str, float | bool | list[float]]


def axes(stage: str, tensor: str, ndim: int) -> dict[str, int]:
    """Where the token axis (`token_axis`) or the channel axis (`channel_axis`) of a canonical tensor lies,
    as `gather`'s keywords; {} when it has neither. The pairs are compared in the canonical layout
    (parity.align: each family adapter converts its records to it), so these are layout facts, not a
    family's: token ids are (B, L) and sequence embeddings (B, L, D) (a pooled embedding (B, D) has no
    token axis; an attention mask has one, but a 0/1 mask matches itself shifted, so none is searched);
    what the VAE decodes is (B, C, H, W) or (B, C, T, H, W), the layout every Diffusers VAE's `decode` takes
    (both runners record it as `vae.decode` receives it), and the frames the adapters' `to_canonical` gives are
    (B, C, H, W) or (B, C, T, H, W)."""
    base = tensor.split(".")[0].removeprefix("negative_")
    if stage == stages.TEXT_ENCODING and (
        (base in ("input_ids", "prior_token_ids") and ndim == 2) or (base.endswith("_embeds") and ndim == 3)
    ):
        return {"token_axis": 1}
    if stage == stages.DECODING and base in ("vae_input", "frames") and ndim >= 4:
        return {"channel_axis": 1}
    return {}


def gather(
    reference: torch.Tensor, port: torch.Tensor, token_axis: int | None = None, channel_axis: int | None = None
) -> Evidence:
    """The evidence for one failing pair. `token_axis`: the tensors' token axis, along which a length
    difference and a shift by a few tokens are looked for; `channel_axis`: their channel axis, along which
    a per-channel affine map is fitted (`axes` says where they lie)."""
    out: Evidence = {}
    if reference.numel() == 0 or reference.shape != port.shape:
        if reference.ndim == port.ndim == 1:
            out["length_difference"] = port.shape[0] - reference.shape[0]
        if token_axis is not None and reference.numel() and port.numel():
            out |= token_shift(reference.detach(), port.detach(), token_axis)
        return out
    if token_axis is not None:
        out |= token_shift(reference.detach(), port.detach(), token_axis)
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
    if channel_axis is not None and n == ref.numel():  # a NaN would make every channel's fit meaningless
        out |= channel_affine(reference.detach(), port.detach(), channel_axis)
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


# Shifts of up to this many tokens either way are looked for: a chat-template prefix dropped at another
# index, or a BOS added or stripped, moves the tokens by one or a few. Each shift is one pass over the tensor.
MAX_TOKEN_SHIFT = 4


def token_shift(reference: torch.Tensor, port: torch.Tensor, axis: int) -> Evidence:
    """Along the token axis `axis` of two tensors whose other dimensions agree: both lengths when they differ
    (`token_length_reference`, `token_length_port`, `token_length_difference` = port - reference), and the
    shift d (|d| <= MAX_TOKEN_SHIFT) under which the overlapping tokens agree best, port token i + d against
    reference token i (`token_shift`), with the rel L2 over that overlap (`rel_l2_after_token_shift`) and its
    length in tokens (`token_shift_overlap`). d = 0, the common prefix, is tried only when the lengths differ
    (at equal lengths it is the plain comparison); an overlap shorter than half the shorter tensor proves
    nothing and is not tried."""
    if reference.ndim != port.ndim or not -reference.ndim <= axis < reference.ndim:
        return {}
    axis %= reference.ndim
    if [s for i, s in enumerate(reference.shape) if i != axis] != [s for i, s in enumerate(port.shape) if i != axis]:
        return {}
    ref_len, port_len = reference.shape[axis], port.shape[axis]
    out: Evidence = {}
    if ref_len != port_len:
        out |= {"token_length_reference": ref_len, "token_length_port": port_len}
        out["token_length_difference"] = port_len - ref_len
    ref, val = reference.to(torch.float64), port.to(torch.float64)
    shortest = min(ref_len, port_len)
    tried, norms = [], []
    for shift in sorted(range(-MAX_TOKEN_SHIFT, MAX_TOKEN_SHIFT + 1), key=abs):  # the smallest shift wins a tie
        start, stop = max(0, -shift), min(ref_len, port_len - shift)
        if (shift == 0 and ref_len == port_len) or stop - start < max(1, (shortest + 1) // 2):
            continue
        r, p = ref.narrow(axis, start, stop - start), val.narrow(axis, start + shift, stop - start)
        norms += [torch.linalg.vector_norm(p - r), torch.linalg.vector_norm(r)]
        tried.append((shift, stop - start))
    if not tried:
        return out
    found = torch.stack(norms).tolist()  # one transfer for every shift
    best: tuple[int, float, int] | None = None
    for (shift, overlap), diff, norm in zip(tried, found[::2], found[1::2], strict=True):
        if norm > 0.0 and math.isfinite(diff) and (best is None or diff / norm < best[1]):
            best = (shift, diff / norm, overlap)
    if best is not None:
        out |= {"token_shift": best[0], "rel_l2_after_token_shift": best[1], "token_shift_overlap": best[2]}
    return out


# The per-channel fit reads at most this many elements: a real-width video's frames hold hundreds of
# millions, and an evenly strided subsample fits an exact map as exactly (and estimates what it leaves).
CHANNEL_FIT_AT_MOST = 2**22


def channel_affine(reference: torch.Tensor, port: torch.Tensor, axis: int) -> Evidence:
    """Per channel c along `axis` (equal shapes), the least-squares fit port_c ~ a_c * reference_c + b_c
    (`channel_fit_scale`: every a_c, `channel_fit_offset`: every b_c) and what it leaves unexplained
    (`rel_l2_after_channel_affine`: the residual's L2 over the port's per-channel variation, the L2 of the
    port minus its channel means: a port that is constant per channel is not called an affine copy).
    Tensors above CHANNEL_FIT_AT_MOST elements are fitted on an evenly strided subsample."""
    if reference.shape != port.shape or not -reference.ndim <= axis < reference.ndim:
        return {}
    channels = reference.shape[axis]
    if channels < 2 or reference.numel() < 2 * channels:
        return {}
    stride = max(1, math.ceil(reference.numel() / CHANNEL_FIT_AT_MOST))
    # subsampled before the float64 copy, so a large tensor is copied once, in its own dtype, at most
    ref = reference.movedim(axis, 0).reshape(channels, -1)[:, ::stride].to(torch.float64)
    val = port.movedim(axis, 0).reshape(channels, -1)[:, ::stride].to(torch.float64)
    ref_mean, val_mean = ref.mean(1), val.mean(1)
    ref_c, val_c = ref - ref_mean[:, None], val - val_mean[:, None]
    variance, covariance = (ref_c * ref_c).sum(1), (ref_c * val_c).sum(1)
    scale = torch.where(variance > 0, covariance / variance.clamp(min=torch.finfo(torch.float64).tiny), 0.0)
    offset = val_mean - scale * ref_mean
    # the residual itself, not var_p - cov^2 / var_r: that difference cancels to noise when the fit is exact
    residual = torch.linalg.vector_norm(val_c - scale[:, None] * ref_c)
    *found, residual_norm, spread = torch.cat(
        [scale, offset, residual[None], torch.linalg.vector_norm(val_c)[None]]
    ).tolist()
    if spread == 0.0:
        return {}
    return {
        "channel_fit_scale": found[:channels],
        "channel_fit_offset": found[channels:],
        "rel_l2_after_channel_affine": residual_norm / spread,
    }
