"""Fault: the port divides Wan's latents by latents_std where Diffusers multiplies (Diffusers' WanPipeline:
latents / (1 / latents_std) + latents_mean; the port: latents / latents_std + latents_mean): patched into
SGLang's WanT2V480PConfig.get_decode_scale_and_shift (the scale it divides by is inverted). Every denoising
tensor matches; what the VAE decodes is a per-channel affine map of the reference's. Run on wan-t2v-tiny
after confirm_wan_diffusers_schedule.py (the case's own divergence)."""

import functools

from sglang.multimodal_gen.configs.pipeline_configs.wan import WanT2V480PConfig

_original = WanT2V480PConfig.get_decode_scale_and_shift


@functools.wraps(_original)
def get_decode_scale_and_shift(self, device, dtype, vae):
    scaling_factor, shift_factor = _original(self, device, dtype, vae)  # 1 / latents_std, latents_mean
    return 1.0 / scaling_factor, shift_factor


WanT2V480PConfig.get_decode_scale_and_shift = get_decode_scale_and_shift
