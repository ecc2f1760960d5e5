"""Qwen-Image-Layered: an RGBA image decomposed into layers; latents carry a layer axis packed into tokens.

Both libraries pack latents of shape (B, L, C, h, w) into (B, L * h/2 * w/2, 4C) tokens, layer by layer
(Diffusers' `_pack_latents` with `layers`): L = layers + 1 for the generated latents (the composite image,
then each layer), L = layers + 2 for the DiT's input and output (the condition image's latents appended).
The canonical layout is (B, C, L, h, w), as Diffusers' `_unpack_latents` gives it. The image size is fixed
by the pipelines (a 640 px bucket, whatever the case says), so the case states height = width = 640.

Decoded frames are RGBA, one per layer (the composite dropped): Diffusers returns them per prompt as
(L, 4, H, W), SGLang as L samples of one frame, (L, 4, 1, H, W). The canonical frames hold the layers on
the time axis, (1, 4, L, H, W), so each layer is judged as a frame. (SGLang's layered pipeline runs one
prompt at a time: it asserts a batch of 1.)
"""

from __future__ import annotations

import torch

from parity.errors import ParityError
from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec
from parity.families.qwen_image import QWEN_IMAGE
from parity.trace import Record

# Qwen-Image's VAE downsamples by 8, then 2x2 patches are packed into one token.
PIXELS_PER_TOKEN_SIDE = 16


class QwenImageLayeredAdapter(FamilyAdapter):
    def to_canonical(self, record: Record) -> torch.Tensor:
        frames = record.value
        if record.layout == "frames_bcthw" and frames.ndim == 5 and frames.shape[0] > 1 and frames.shape[2] == 1:
            return frames.permute(2, 1, 0, 3, 4)  # SGLang's layers as samples: (L, C, 1, H, W) -> (1, C, L, H, W)
        return super().to_canonical(record)

    def convert(self, record: Record) -> torch.Tensor:
        if record.layout == "packed_layers" and record.value.ndim == 3:
            return unpack_layers(record.value, record.meta["height"], record.meta["width"])
        return super().convert(record)


def unpack_layers(packed: torch.Tensor, image_height: int, image_width: int) -> torch.Tensor:
    """(B, L * h/2 * w/2, 4C) tokens -> (B, C, L, h, w) latents, with L from the token count."""
    batch, tokens, packed_channels = packed.shape
    rows, cols = image_height // PIXELS_PER_TOKEN_SIDE, image_width // PIXELS_PER_TOKEN_SIDE
    if tokens % (rows * cols) or packed_channels % 4:
        raise ParityError(
            f"cannot unpack layered latents of shape {list(packed.shape)} for a {image_height}x{image_width} image"
        )
    layers = tokens // (rows * cols)
    x = packed.reshape(batch, layers, rows, cols, packed_channels // 4, 2, 2)
    x = x.permute(0, 4, 1, 2, 5, 3, 6)
    return x.reshape(batch, packed_channels // 4, layers, rows * 2, cols * 2)


QWEN_IMAGE_LAYERED = QwenImageLayeredAdapter(
    name="qwen-image-layered",
    diffusers_classes=("QwenImageLayeredPipeline",),
    reference=ReferenceSpec(
        encode_prompt=("prompt_embeds", None),
        # prepare_latents returns (noise, the condition image's VAE latents), both packed; SGLang keeps the
        # latter in Req.image_latent.
        prepare_latents=("latents", "image_latents"),
        timestep_scale=1000.0,
        cfg_scale_argument="true_cfg_scale",
        # Diffusers takes the layer count as `layers`, SGLang as `num_frames`.
        num_frames_argument="layers",
        # Diffusers' pipeline takes no height/width: the output size follows the image and the 640 px bucket.
        omitted_arguments=("height", "width"),
    ),
    port=PortSpec(
        model_id="Qwen-Image-Layered",
        pipeline="QwenImageLayeredPipeline",
        # One Hybrid stage (QwenImageLayeredBeforeDenoisingStage) fills Req.prompt_embeds,
        # negative_prompt_embeds, latents, image_latent and the schedule; the runner reads them after it.
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        # The Hybrid stage keeps its tokenizer as `tokenizer` (no `tokenizers` list).
        tokenizers=("tokenizer",),
        latent_fields=(("image_latent", "image_latents"),),
        cfg_scale_argument="true_cfg_scale",
        num_frames_argument="num_frames",
    ),
    prompt_templates=QWEN_IMAGE.prompt_templates,
    unpadded_tokens=True,
    latent_layout="packed_layers",
    block_lists=("transformer_blocks",),
    block_outputs=("encoder_hidden_states", "hidden_states"),
    input_image_mode="RGBA",
    # Defaults differ (Diffusers: no CFG renormalization, Chinese caption prompt; SGLang: both the other
    # way); use_en_prompt only picks the captioning prompt of an empty prompt, which the case never has.
    call_inputs=(("cfg_normalize", True), ("use_en_prompt", True)),
    dit_guidance=False,
    video=True,  # frames keep the layer axis (see the module docstring)
)
