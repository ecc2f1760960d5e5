"""Fault: the port sets Req.raw_latent_shape to Flux's latents' shape before packing (B, C, H, W), as
the skill describes the field, where sglang 0.5.23 keeps the packed latents' own shape (B, tokens,
channels) and its denoiser reads [0] as the batch size and [1] as the token count (to trim sequence-
parallel padding). At one rank nothing numeric changes: only the Req contract can catch it."""

import functools

import torch
from sglang.multimodal_gen.runtime.pipelines_core.stages.latent_preparation import LatentPreparationStage

_original = LatentPreparationStage.forward


@functools.wraps(_original)
def forward(self, batch, server_args):
    batch = _original(self, batch, server_args)
    size, tokens, channels = batch.latents.shape  # Flux packs 2x2 patches of the 8x-downsampled latents
    batch.raw_latent_shape = torch.Size((size, channels // 4, batch.height // 8, batch.width // 8))
    return batch


LatentPreparationStage.forward = forward
