"""Fault: the port packs its initial noise with height and width swapped."""

import functools

from sglang.multimodal_gen.configs.pipeline_configs.flux import FluxPipelineConfig

_original = FluxPipelineConfig.maybe_pack_latents


@functools.wraps(_original)
def maybe_pack_latents(self, latents, batch_size, batch):
    return _original(self, latents.transpose(-1, -2).contiguous(), batch_size, batch)


FluxPipelineConfig.maybe_pack_latents = maybe_pack_latents
