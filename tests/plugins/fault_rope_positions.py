"""Fault: the port builds its image RoPE positions with rows and columns swapped.

The DiT's inputs (latents, timestep, guidance, text) stay equal; the first block already
differs, because positions only act inside attention.
"""

import functools

from sglang.multimodal_gen.configs.pipeline_configs.flux import FluxPipelineConfig

_original = FluxPipelineConfig._prepare_latent_image_ids


@functools.wraps(_original)
def _prepare_latent_image_ids(self, original_height, original_width, device):
    ids = _original(self, original_height, original_width, device)
    return ids[:, [0, 2, 1]]


FluxPipelineConfig._prepare_latent_image_ids = _prepare_latent_image_ids
