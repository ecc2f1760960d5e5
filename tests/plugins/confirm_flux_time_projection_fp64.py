"""Confirm (throwaway, GPU): the float64 audit's flags on flux-wide (every block at ~1e-7 on an H200) come
from the time projection. With `--port-ops native` SGLang's Flux embeds the timestep through its JIT kernel
(sglang.kernels.ops.diffusion.modulate.timestep_embedding_jit), routed to parity's bit-exact twin
(parity/runners/native_twins.py: timestep_embedding), which, as the kernel, builds the sinusoid's
frequencies from float32 constants (-logf(max_period) / half in fp32): at t = 1000 the angles carry up to
1000 x 6e-8 rad, so even replayed in float64 the projection differs from Diffusers' by 1.6e-7 relative.
This routes the kernel to Diffusers' formula instead (float64 constants, the arithmetic in the input's
dtype, so a float64 replay computes it in float64)."""

import math

import torch

from parity.runners import native_twins

KEY = native_twins._OPS + "modulate.timestep_embedding_jit.timestep_embedding"


def timestep_embedding(
    t, dim, flip_sin_to_cos=False, downscale_freq_shift=0.0, scale=1, max_period=10000, dtype=torch.float32
):
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - downscale_freq_shift))
    angle = scale * t.float()[:, None] * freqs[None, :]
    sin, cos = torch.sin(angle), torch.cos(angle)
    return torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)


assert KEY in native_twins.TWINS
native_twins.TWINS[KEY] = timestep_embedding
