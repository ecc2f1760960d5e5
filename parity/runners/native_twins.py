"""Pure-torch twins of the SGLang kernels that `--port-ops native` reaches and that SGLang's own
`fallback_torch` has no twin for (parity.runners.port_ops routes them in).

Each twin is written from its kernel's own source (the CUDA/Triton code and its Python wrapper,
named in the twin's docstring): the same operands, the same dtype in which each step is computed and
rounded, the same in-place contract and the same RoPE layout. Where the kernel rounds exactly as
eager PyTorch does (it says "bit-exact vs eager"), the twin is that eager chain and matches bit for
bit; where the kernel keeps a step in fp32 that the twin computes in another reduction order or with
a fused multiply-add the kernel's compiler may or may not emit, the twin agrees within one rounding
of the output dtype. tests/test_native_twins_gpu.py checks every twin against its kernel on a GPU.

Besides the twins, `DECLINED` names the kernels whose own contract is "None: not applicable here"
(the caller then runs SGLang's eager path); native mode answers None for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _rope_fp32(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    is_neox: bool,
    full_width: bool,
) -> torch.Tensor:
    """RoPE in fp32 on the first `rope_dim` features of `x` [T, H, D] (fp32), as SGLang's qknorm+RoPE
    kernel and FlashInfer's cos/sin-cache RoPE compute it: per token, `cos`/`sin` [T, rope_dim / 2]
    hold one value per rotated pair (half width) or [T, rope_dim] one per feature (full width).
    Interleaved (GPT-J, `is_neox=False`): pairs (2i, 2i + 1); NeoX: pairs (i, i + rope_dim / 2).
    out_a = a * cos_a - b * sin_a, out_b = b * cos_b + a * sin_b."""
    rope_dim = sin.shape[-1] * (1 if full_width else 2)
    half = rope_dim // 2
    c = cos.float().unsqueeze(1)
    s = sin.float().unsqueeze(1)
    if is_neox:
        a, b = x[..., :half], x[..., half:rope_dim]
        ca, cb = (c[..., :half], c[..., half:]) if full_width else (c, c)
        sa, sb = (s[..., :half], s[..., half:]) if full_width else (s, s)
        rotated = torch.cat([a * ca - b * sa, b * cb + a * sb], dim=-1)
    else:
        a, b = x[..., 0:rope_dim:2], x[..., 1:rope_dim:2]
        ca, cb = (c[..., 0::2], c[..., 1::2]) if full_width else (c, c)
        sa, sb = (s[..., 0::2], s[..., 1::2]) if full_width else (s, s)
        rotated = torch.stack([a * ca - b * sa, b * cb + a * sb], dim=-1).flatten(-2)
    if rope_dim == x.shape[-1]:
        return rotated
    return torch.cat([rotated, x[..., rope_dim:]], dim=-1)


def _rope_rounded(
    y: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    *,
    is_neox: bool,
    full_width: bool,
) -> torch.Tensor:
    """The RoPE of the qknorm+RoPE kernel's `round_norm_before_rope` variant on the already rounded
    norm output `y` [T, H, D] (bf16/fp16): with an fp32 cache each product and the sum are fp32 and the
    result rounds once; with a cache of the activation dtype both products and the sum round to that
    dtype (the kernel's `rotary_sub` / `rotary_add`), as eager ops in that dtype do."""
    if cos.dtype == torch.float32:
        return _rope_fp32(y.float(), cos, sin, is_neox=is_neox, full_width=full_width).to(y.dtype)
    rope_dim = sin.shape[-1] * (1 if full_width else 2)
    half = rope_dim // 2
    c = cos.to(y.dtype).unsqueeze(1)
    s = sin.to(y.dtype).unsqueeze(1)
    if is_neox:
        a, b = y[..., :half], y[..., half:rope_dim]
        ca, cb = (c[..., :half], c[..., half:]) if full_width else (c, c)
        sa, sb = (s[..., :half], s[..., half:]) if full_width else (s, s)
        rotated = torch.cat([a * ca - b * sa, b * cb + a * sb], dim=-1)
    else:
        a, b = y[..., 0:rope_dim:2], y[..., 1:rope_dim:2]
        ca, cb = (c[..., 0::2], c[..., 1::2]) if full_width else (c, c)
        sa, sb = (s[..., 0::2], s[..., 1::2]) if full_width else (s, s)
        rotated = torch.stack([a * ca - b * sa, b * cb + a * sb], dim=-1).flatten(-2)
    return torch.cat([rotated, y[..., rope_dim:]], dim=-1) if rope_dim < y.shape[-1] else rotated


def _rms_factor(x: torch.Tensor, eps: float) -> torch.Tensor:
    """1 / sqrt(mean(x^2) + eps) per row of fp32 `x`, as the kernels' warp/CTA reduction does it
    (the sum in another order: differences stay in fp32's last bits)."""
    return torch.rsqrt(x.square().sum(-1, keepdim=True) / x.shape[-1] + eps)


def fused_inplace_qknorm_rope(
    q: torch.Tensor,
    k: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    positions: torch.Tensor,
    *,
    is_neox: bool,
    eps: float = 1e-6,
    head_dim: int = 0,
    rope_dim: int = 0,
    round_norm_before_rope: bool = False,
    cache_has_full_width: bool = False,
) -> None:
    """Twin of sglang.kernels.ops.diffusion.rope.qknorm_rope_jit.fused_inplace_qknorm_rope
    (jit/csrc/diffusion/qknorm_rope.cuh, QKNormRopeKernel): in place on q [T, Hq, D] and k [T, Hk, D],
    token t at row `positions[t]` of `cos_sin_cache` ([cos | sin], each rope_dim / 2 wide, or rope_dim
    wide with `cache_has_full_width`). Per head row: RMSNorm in fp32 (x * (rsqrt(mean(x^2) + eps) * w)),
    RoPE on the first rope_dim features in fp32 on the unrounded norm output, one rounding to q's dtype.
    `round_norm_before_rope`: the norm output (x * rsqrt * w) rounds to q's dtype first and the RoPE then
    rounds as `_rope_rounded` says."""
    head_dim = head_dim or q.size(-1)
    if not rope_dim:
        width = cos_sin_cache.size(-1)
        rope_dim = width // 2 if cache_has_full_width else width
    rows = cos_sin_cache.index_select(0, positions.reshape(-1).to(device=cos_sin_cache.device, dtype=torch.long))
    span = rope_dim if cache_has_full_width else rope_dim // 2
    cos, sin = rows[:, :span], rows[:, span : 2 * span]
    for x, weight in ((q, q_weight), (k, k_weight)):
        heads = x.reshape(rows.shape[0], -1, head_dim)
        xf = heads.float()
        if round_norm_before_rope:
            normed = (xf * _rms_factor(xf, eps) * weight.float()).to(x.dtype)
            out = _rope_rounded(normed, cos, sin, is_neox=is_neox, full_width=cache_has_full_width)
        else:
            normed = xf * (_rms_factor(xf, eps) * weight.float())
            out = _rope_fp32(normed, cos, sin, is_neox=is_neox, full_width=cache_has_full_width).to(x.dtype)
        x.copy_(out.view(x.shape))


def fused_inplace_qknorm(
    q: torch.Tensor,
    k: torch.Tensor,
    q_weight: torch.Tensor,
    k_weight: torch.Tensor,
    eps: float = 1e-6,
    *,
    head_dim: int = 0,
) -> None:
    """Twin of sglang.kernels.ops.layernorm.norm.fused_inplace_qknorm (jit/csrc/elementwise/qknorm.cuh
    with include/sgl_kernel/impl/norm.cuh `apply_norm_impl`): in place, every head row of q and k
    becomes x * rsqrt(mean(x^2) + eps) * w in fp32, rounded once to the input dtype."""
    head_dim = head_dim or q.size(-1)
    for x, weight in ((q, q_weight), (k, k_weight)):
        xf = x.reshape(-1, head_dim).float()
        x.copy_((xf * _rms_factor(xf, eps) * weight.float()).to(x.dtype).view(x.shape))


def residual_gate_add(residual: torch.Tensor, update: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Twin of sglang.kernels.kda_kernels.residual_gate_add_jit.residual_gate_add (the JIT
    residual_gate_add.cuh and the Triton `_rga_transposed`): residual + update * gate, the product
    rounded to the storage dtype and the sum rounded again (the kernel's `cvt.rn` after each step),
    which is what eager PyTorch does for fp16/bf16; fp32 runs eager in SGLang too."""
    return residual + update * gate


def residual_gate_add_cuda(residual: torch.Tensor, update: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Twin of residual_gate_add_jit.residual_gate_add_cuda: the same kernels as `residual_gate_add`.
    In fp32 that kernel fuses the multiply-add (one rounding) where this rounds the product first: the
    two differ by up to one fp32 rounding of update * gate (measured on an H200: 9.5e-7 at most)."""
    return residual + update * gate


def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 0.0,
    scale: float = 1,
    max_period: int = 10000,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Twin of sglang.kernels.ops.diffusion.modulate.timestep_embedding_jit.timestep_embedding
    (jit/csrc/diffusion/timestep_embedding.cuh): fp32 [B, dim], [sin | cos] or, flipped, [cos | sin].
    The host computes k = -logf(max_period) / (half - downscale_freq_shift) in fp32; per feature i the
    kernel takes angle = (scale * t) * expf(k * i) in fp32 and stores sinf / cosf of it (no fast
    math). t other than fp16/bf16/fp32 is cast to `dtype` first, as the wrapper does."""
    if t.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        t = t.to(dtype)
    half = dim // 2
    log_period = np.float32(math.log(np.float32(max_period)))  # logf of a float: correctly rounded
    exponent = np.float32(-log_period) / np.float32(np.float32(half) - np.float32(downscale_freq_shift))
    indices = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(indices * torch.tensor(float(exponent), dtype=torch.float32, device=t.device))
    angle = (t.float() * torch.tensor(float(np.float32(scale)), dtype=torch.float32, device=t.device))[:, None]
    angle = angle * freqs[None, :]
    sin, cos = torch.sin(angle), torch.cos(angle)
    return torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)


def modulate_scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Twin of sglang.kernels.ops.diffusion.modulate.modulate_scale_shift_jit.modulate_scale_shift
    (ModulateScaleShiftKernel): x * (1 + scale[:, None]) + shift[:, None], each eager op's fp32 opmath
    and rounding to the storage dtype, the contract the kernel states as bit-exact vs this chain."""
    return x * (1 + scale[:, None]) + shift[:, None]


def modulate_scale_shift_cuda(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Twin of modulate_scale_shift_jit.modulate_scale_shift_cuda: the same kernel, no eager branch."""
    return x * (1 + scale[:, None]) + shift[:, None]


def fused_inplace_helios_qk_rope(q: torch.Tensor, k: torch.Tensor, freqs: torch.Tensor) -> None:
    """Twin of sglang.kernels.ops.diffusion.rope.helios_qk_rope_jit.fused_inplace_helios_qk_rope
    (jit/csrc/diffusion/helios_qk_rope.cuh): in place on q/k [N, H, D] or [B, S, H, D] with freqs
    [N, 2D] or [B, S, 2D] fp32; pair p of every head takes cos = freqs[2p], sin = freqs[D + 2p + 1];
    even = x*cos - y*sin, odd = x*sin + y*cos, each product and sum rounded in fp32 (`__fmul_rn`,
    `__fsub_rn`, `__fadd_rn`, so no fused multiply-add), one rounding to the storage dtype."""
    head_dim = q.shape[-1]
    cos = freqs[..., 0:head_dim:2].float().unsqueeze(-2)
    sin = freqs[..., head_dim + 1 :: 2].float().unsqueeze(-2)
    for x in (q, k):
        even, odd = x[..., 0::2].float(), x[..., 1::2].float()
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
        x.copy_(rotated.to(x.dtype))


def head_gate_mul(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Twin of sglang.kernels.ops.diffusion.modulate.head_gate_triton.head_gate_mul: x * (2 * gate)
    per head as [B, T, H * D] (bf16: 2 * gate rounds exactly, the product rounds once, as eager)."""
    batch, tokens = x.shape[0], x.shape[1]
    heads = gate.shape[-1]
    return (x.reshape(batch, tokens, heads, -1) * (2 * gate).unsqueeze(-1)).reshape(batch, tokens, -1)


def ltx2_ada_values9(scale_shift_table: torch.Tensor, timestep: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Twin of sglang.kernels.ops.diffusion.modulate.ltx2_ada_values_triton.ltx2_ada_values9: the nine
    [B, S, D] adaLN values table[i] + timestep[..., i * D:(i + 1) * D], the table rounded to bf16 first
    and the bf16 sum rounded once (timestep is bf16)."""
    batch, seq, _ = timestep.shape
    params, hidden = scale_shift_table.shape
    table = scale_shift_table.to(torch.bfloat16).view(1, 1, params, hidden)
    values = (table + timestep.view(batch, seq, params, hidden)).permute(2, 0, 1, 3).contiguous()
    return tuple(values.unbind(0))


def apply_ltx2_split_rotary_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Twin of sglang.kernels.ops.diffusion.rope.ltx2_rotary_triton.apply_ltx2_split_rotary_emb:
    x [B, T, H * D] with cos/sin [B, H, T, D / 2] (bf16); per head the halves (a, b) become
    bf16(a * cos) + (-b * sin) and bf16(b * cos) + a * sin, the sine product and the sum in fp32 and
    one rounding (the eager `split_x * cos` then `addcmul_` that the kernel reproduces)."""
    batch, tokens, _ = x.shape
    heads, half = cos.shape[1], cos.shape[-1]
    split = x.reshape(batch, tokens, heads, 2, half)
    c = cos.permute(0, 2, 1, 3).unsqueeze(3)
    s = sin.permute(0, 2, 1, 3).unsqueeze(3).float()
    product = (split * c).float()  # rounded to x's dtype first, as `split_x * cos_u`
    first = product[..., 0, :] - split[..., 1, :].float() * s[..., 0, :]
    second = product[..., 1, :] + split[..., 0, :].float() * s[..., 0, :]
    return torch.stack([first, second], dim=3).to(x.dtype).reshape(batch, tokens, -1)


def conv_bias_epilogue(x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """Twin of sglang.kernels.ops.diffusion.modulate.conv_bias_epilogue_triton.conv_bias_epilogue:
    x.dtype(x + bias) or x.dtype(x.dtype(x + bias) + residual), the bias cast to x's dtype first;
    channels_last like x."""
    out = x + bias.reshape(-1).to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
    return out if residual is None else out + residual


def fused_causal_conv3d_cat_pad(x: torch.Tensor, cache_x: torch.Tensor, padding: list[int]) -> torch.Tensor:
    """Twin of sglang.kernels.ops.diffusion.layout.causal_conv3d_cat_pad_triton.fused_causal_conv3d_cat_pad
    (and of the KDA JIT kernel fused_causal_conv3d_cat_pad_cuda): the cached frames before x on the time
    axis, then zero padding (W, H, and the causal time padding less the cached frames), a copy, exact."""
    pad = list(padding)
    pad[4] -= cache_x.shape[2]
    return torch.nn.functional.pad(torch.cat([cache_x.to(x.device), x], dim=2), pad)


def triton_group_norm_silu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, num_groups: int, eps: float = 1e-5
) -> torch.Tensor:
    """Twin of sglang.kernels.ops.diffusion.norm.group_norm_silu_triton.triton_group_norm_silu: per
    (sample, group), fp32 mean and variance as E[x^2] - mean^2 (the kernel's one-pass sums), then
    y = (x - mean) * rsqrt(var + eps) * w + b and y * sigmoid(y) in fp32, one rounding to x's dtype."""
    shape = x.shape
    groups = x.float().reshape(shape[0], num_groups, -1)
    mean = groups.mean(-1, keepdim=True)
    var = (groups * groups).mean(-1, keepdim=True) - mean * mean
    normed = ((groups - mean) * torch.rsqrt(var + eps)).reshape(shape)
    affine = [1, -1, *([1] * (x.dim() - 2))]
    y = normed * weight.float().view(affine) + bias.float().view(affine)
    return (y * torch.sigmoid(y)).to(x.dtype)


def apply_group_norm_silu(x: torch.Tensor, norm: torch.nn.Module, activation: torch.nn.Module) -> torch.Tensor:
    """Twin of sglang.kernels.ops.diffusion.norm.group_norm_silu.apply_group_norm_silu: where that sends
    x to its Triton kernel (CUDA, no grad, an affine nn.GroupNorm and a non-inplace nn.SiLU, the operand
    dtypes the kernel takes), `triton_group_norm_silu`'s arithmetic; elsewhere its own eager chain."""
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if (
        x.is_cuda
        and not torch.is_grad_enabled()
        and isinstance(norm, torch.nn.GroupNorm)
        and isinstance(activation, torch.nn.SiLU)
        and not activation.inplace
        and weight is not None
        and bias is not None
        and x.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and weight.dtype == bias.dtype == x.dtype
    ):
        return triton_group_norm_silu(x, weight, bias, norm.num_groups, norm.eps)
    return activation(norm(x))


def flashinfer_apply_rope_inplace(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    head_size: int,
    cos_sin_cache: torch.Tensor,
    is_neox: bool = True,
) -> None:
    """Twin of FlashInfer's apply_rope_with_cos_sin_cache_inplace, which SGLang's
    apply_flashinfer_rope_qk_inplace calls on CUDA (rotary_embedding/utils.py): in place on
    query/key [nnz, heads * head_size], token t at row positions[t] of the fp32 cache [cos | sin]
    (rotary_dim wide); RoPE on the first rotary_dim features of every head in fp32, one rounding."""
    rows = cos_sin_cache.index_select(0, positions.reshape(-1).to(device=cos_sin_cache.device, dtype=torch.long))
    half = cos_sin_cache.shape[-1] // 2
    cos, sin = rows[:, :half], rows[:, half:]
    for x in (query, key):
        heads = x.reshape(x.shape[0], -1, head_size)
        out = _rope_fp32(heads.float(), cos, sin, is_neox=is_neox, full_width=False)
        x.copy_(out.to(x.dtype).view(x.shape))


_OPS = "sglang.kernels.ops.diffusion."
_KDA = "sglang.kernels.kda_kernels."
# The SGLang kernel (its function's __module__ and __name__) -> its twin here.
TWINS: dict[str, Callable[..., Any]] = {
    _OPS + "rope.qknorm_rope_jit.fused_inplace_qknorm_rope": fused_inplace_qknorm_rope,
    "sglang.kernels.ops.layernorm.norm.fused_inplace_qknorm": fused_inplace_qknorm,
    _KDA + "residual_gate_add_jit.residual_gate_add": residual_gate_add,
    _KDA + "residual_gate_add_jit.residual_gate_add_cuda": residual_gate_add_cuda,
    _OPS + "modulate.timestep_embedding_jit.timestep_embedding": timestep_embedding,
    _OPS + "modulate.modulate_scale_shift_jit.modulate_scale_shift": modulate_scale_shift,
    _OPS + "modulate.modulate_scale_shift_jit.modulate_scale_shift_cuda": modulate_scale_shift_cuda,
    _OPS + "rope.helios_qk_rope_jit.fused_inplace_helios_qk_rope": fused_inplace_helios_qk_rope,
    _OPS + "modulate.head_gate_triton.head_gate_mul": head_gate_mul,
    _OPS + "rope.ltx2_rotary_triton.apply_ltx2_split_rotary_emb": apply_ltx2_split_rotary_emb,
    _OPS + "modulate.ltx2_ada_values_triton.ltx2_ada_values9": ltx2_ada_values9,
    _OPS + "modulate.conv_bias_epilogue_triton.conv_bias_epilogue": conv_bias_epilogue,
    _OPS + "layout.causal_conv3d_cat_pad_triton.fused_causal_conv3d_cat_pad": fused_causal_conv3d_cat_pad,
    _KDA + "causal_conv3d_cat_pad_jit.fused_causal_conv3d_cat_pad_cuda": fused_causal_conv3d_cat_pad,
    _OPS + "norm.group_norm_silu.apply_group_norm_silu": apply_group_norm_silu,
    _OPS + "norm.group_norm_silu_triton.triton_group_norm_silu": triton_group_norm_silu,
}

# (module, attribute) bindings that are not an SGLang kernel function but call a kernel library's
# op directly -> the twin put there (only where the attribute holds an op, i.e. is not None).
ATTRIBUTE_TWINS: dict[tuple[str, str], Callable[..., Any]] = {
    ("sglang.multimodal_gen.runtime.layers.rotary_embedding.utils", "flashinfer_apply_rope_inplace"): (
        flashinfer_apply_rope_inplace
    ),
}

# Kernels whose contract is "None: this fast path does not apply" and whose callers then run SGLang's
# eager path (every `try_*` kernel is one too, by the naming SGLang keeps). Why each is safe to decline:
DECLINED: dict[str, str] = {
    _OPS + "norm.native_bf16_rmsnorm_triton.rmsnorm_scale": "Z-Image's zimage_rmsnorm_scale: norm(x) * scale",
    _OPS + "norm.native_bf16_rmsnorm_triton.rmsnorm_tanh_residual": (
        "Z-Image's zimage_rmsnorm_tanh_mul_add: residual + tanh(gate) * norm(x)"
    ),
    _OPS + "norm.zimage_qk_rmsnorm_triton.zimage_qk_rmsnorm_native": (
        "Z-Image's zimage_native_qk_rmsnorm: apply_qk_norm_with_optional_rope"
    ),
    _OPS + "layout.wan_causal_cache_triton.cat_pad_channels_last_3d": (
        "the Wan / Qwen-Image VAE's cached causal conv: torch.cat + F.pad"
    ),
}
