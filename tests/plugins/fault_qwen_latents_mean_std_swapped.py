"""Fault: the port de-normalizes Qwen-Image's latents with latents_mean and latents_std swapped
(latents * mean + std where Diffusers computes latents * std + mean): patched into SGLang's
QwenImagePipelineConfig.get_decode_scale_and_shift (its scale is 1 / latents_std, its shift latents_mean).
Every denoising tensor matches; what the VAE decodes is a per-channel affine map of the reference's
(qwen-image-tiny)."""

from sglang.multimodal_gen.configs.models.vaes.base import _channelwise_decode_scale_and_shift
from sglang.multimodal_gen.configs.pipeline_configs.qwen_image import QwenImagePipelineConfig


def get_decode_scale_and_shift(self, device, dtype, vae):
    arch = self.vae_config.arch_config
    # the arguments are (latents_mean, latents_std, ...): given the other way round
    return _channelwise_decode_scale_and_shift(
        tuple(arch.latents_std), tuple(arch.latents_mean), arch.z_dim, device, dtype
    )


QwenImagePipelineConfig.get_decode_scale_and_shift = get_decode_scale_and_shift
