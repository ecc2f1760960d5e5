"""Flux.1: two text encoders (CLIP pooled + T5 sequence), latents packed 2x2 into tokens."""

from __future__ import annotations

import math

import torch

from parity.errors import ParityError
from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec
from parity.trace import Record


class FluxAdapter(FamilyAdapter):
    def convert(self, record: Record) -> torch.Tensor:
        if record.layout == "packed" and record.value.ndim == 3:  # a 4-D tensor is already unpacked
            return unpack_2x2(record.value, record.meta["height"], record.meta["width"])
        return super().convert(record)


def unpack_2x2(packed: torch.Tensor, image_height: int, image_width: int) -> torch.Tensor:
    """(B, h/2 * w/2, C*4) tokens -> (B, C, h, w) latents, as Diffusers' `_unpack_latents`.

    The latent size follows from the token count and the image size, so neither side's VAE
    scale factor is needed: tokens = (H / r) * (W / r) with r = 2 * vae_scale_factor.
    """
    batch, tokens, packed_channels = packed.shape
    ratio = math.sqrt(image_height * image_width / tokens)
    rows, cols = round(image_height / ratio), round(image_width / ratio)
    if rows * cols != tokens or packed_channels % 4:
        raise ParityError(
            f"cannot unpack Flux latents of shape {list(packed.shape)} for a {image_height}x{image_width} image"
        )
    x = packed.view(batch, rows, cols, packed_channels // 4, 2, 2)
    x = x.permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, packed_channels // 4, rows * 2, cols * 2)


FLUX = FluxAdapter(
    name="flux",
    diffusers_classes=("FluxPipeline",),
    reference=ReferenceSpec(
        # Diffusers' FluxPipeline.encode_prompt returns (prompt_embeds, pooled_prompt_embeds, text_ids).
        encode_prompt=("prompt_embeds", "pooled_prompt_embeds", None),
        # Diffusers' FluxPipeline passes timestep / 1000 and the raw guidance (the DiT multiplies
        # both by 1000 inside).
        timestep_scale=1000.0,
    ),
    port=PortSpec(
        model_id="FLUX.1-dev",
        pipeline="FluxPipeline",
        # SGLang's Req.prompt_embeds for Flux: [CLIP pooled vector, T5 sequence].
        prompt_embeds=("pooled_prompt_embeds", "prompt_embeds"),
        negative_prompt_embeds=("negative_pooled_prompt_embeds", "negative_prompt_embeds"),
        repeated_embeds=(
            ("pooled_embeds", ("pooled_prompt_embeds",)),
            ("neg_pooled_embeds", ("negative_pooled_prompt_embeds",)),
        ),
        # SGLang passes the timestep as is and the guidance already x1000.
        guidance_scale=1e-3,
    ),
    latent_layout="packed",
    block_lists=("transformer_blocks", "single_transformer_blocks"),
    block_outputs=("encoder_hidden_states", "hidden_states"),
    # Both libraries' Flux embed timestep then guidance through a diffusers `Timesteps` (SGLang's subclasses it).
    time_embedding_inputs=True,
)
