"""Fault: the port forgets the VAE shift_factor when de-normalizing latents before decode."""

import functools

from sglang.multimodal_gen.configs.pipeline_configs.flux import FluxPipelineConfig

_original = FluxPipelineConfig.get_decode_scale_and_shift


@functools.wraps(_original)
def get_decode_scale_and_shift(self, device, dtype, vae):
    scaling_factor, _shift = _original(self, device, dtype, vae)
    return scaling_factor, None


FluxPipelineConfig.get_decode_scale_and_shift = get_decode_scale_and_shift
