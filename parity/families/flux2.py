"""FLUX.2 [dev]: one Mistral3 text encoder (three stacked hidden states), 2x2-patchified latents kept as tokens."""

from __future__ import annotations

import math

import torch

from parity.errors import ParityError
from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec
from parity.trace import Record

# The system message both pipelines put before the user's text (Diffusers' flux2/system_messages.py
# SYSTEM_MESSAGE, SGLang's FLUX_2_SYSTEM_MESSAGE), as the fixture's Mistral chat template renders it.
SYSTEM_MESSAGE = (
    "You are an AI that reasons about image descriptions. You give structured responses focusing on object "
    "relationships, object\nattribution and actions without speculation."
)


class Flux2Adapter(FamilyAdapter):
    def convert(self, record: Record) -> torch.Tensor:
        if record.layout == "tokens" and record.value.ndim == 3:  # a 4-D tensor is already the patchified grid
            return unpack_tokens(record.value, record.meta["height"], record.meta["width"])
        return super().convert(record)


def unpack_tokens(tokens: torch.Tensor, image_height: int, image_width: int) -> torch.Tensor:
    """(B, h * w, C) tokens -> (B, C, h, w), the patchified latent grid both pipelines draw the noise in
    (FLUX.2 patchifies 2x2 into channels first, then flattens rows and columns: Diffusers' `_pack_latents`).

    The grid follows from the token count and the image's aspect ratio, so neither side's VAE scale factor
    is needed."""
    batch, count, channels = tokens.shape
    ratio = math.sqrt(image_height * image_width / count)
    rows, cols = round(image_height / ratio), round(image_width / ratio)
    if rows * cols != count:
        raise ParityError(
            f"cannot unpack FLUX.2 tokens of shape {list(tokens.shape)} for a {image_height}x{image_width} image"
        )
    return tokens.permute(0, 2, 1).reshape(batch, channels, rows, cols)


FLUX2 = Flux2Adapter(
    name="flux2",
    diffusers_classes=("Flux2Pipeline",),
    reference=ReferenceSpec(
        # Diffusers' Flux2Pipeline.encode_prompt returns (prompt_embeds, text_ids);
        # prepare_latents returns (latents, latent_ids).
        encode_prompt=("prompt_embeds", None),
        prepare_latents=("latents", None),
        # Diffusers passes the DiT timestep / 1000 (its DiT multiplies by 1000 inside); both sides pass the
        # raw embedded guidance, which both DiTs multiply by 1000.
        timestep_scale=1000.0,
    ),
    port=PortSpec(
        model_id="FLUX.2-dev",
        pipeline="Flux2Pipeline",
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
    ),
    # Both sides tokenize the chat-templated system + user messages through the PixtralProcessor.
    prompt_templates=(f"<s>[SYSTEM_PROMPT]{SYSTEM_MESSAGE}[/SYSTEM_PROMPT][INST]{{}}[/INST]",),
    latent_layout="tokens",
    block_lists=("transformer_blocks", "single_transformer_blocks"),
    block_outputs=("encoder_hidden_states", "hidden_states"),
    # The single-stream blocks take and return the joint [text, image] stream as one tensor.
    block_list_outputs=(("single_transformer_blocks", ("hidden_states",)),),
    # ... which both DiTs concatenate from the double-stream outputs between the lists.
    block_lists_chained=False,
)
