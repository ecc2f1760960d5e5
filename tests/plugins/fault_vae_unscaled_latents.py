"""Fault: the port feeds its VAE the latents without undoing the VAE's normalization (no
division by scaling_factor, no shift_factor): "unscaled latents"."""

import functools

from sglang.multimodal_gen.configs.pipeline_configs.flux import FluxPipelineConfig

_original = FluxPipelineConfig.get_decode_scale_and_shift


@functools.wraps(_original)
def get_decode_scale_and_shift(self, device, dtype, vae):
    return 1.0, None


FluxPipelineConfig.get_decode_scale_and_shift = get_decode_scale_and_shift
