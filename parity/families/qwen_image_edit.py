"""Qwen-Image-Edit: Qwen-Image conditioned on an input image, which reaches the DiT twice: through the
Qwen2.5-VL encoder (a processor expands `<|image_pad|>` in the chat template) and as VAE latents packed
into tokens appended after the generated ones."""

from __future__ import annotations

import dataclasses

import torch

from parity.families.base import PortSpec, ReferenceSpec
from parity.families.flux import FluxAdapter
from parity.trace import Record


@dataclasses.dataclass(frozen=True)
class QwenImageEditAdapter(FluxAdapter):
    """token_pixels: the side in pixels of the image patch one DiT token carries (VAE scale 8 x 2x2 packing)."""

    token_pixels: int = 16

    def convert(self, record: Record) -> torch.Tensor:
        # Both pipelines run the DiT on [generated tokens, condition-image tokens] and keep the DiT
        # output's first (H/16)*(W/16) tokens: compare those (the image tokens are `image_latents`).
        value = record.value
        if record.layout == "packed" and value.ndim == 3:
            tokens = (record.meta["height"] // self.token_pixels) * (record.meta["width"] // self.token_pixels)
            if value.shape[1] > tokens:
                record = dataclasses.replace(record, value=value[:, :tokens])
        return super().convert(record)


QWEN_IMAGE_EDIT = QwenImageEditAdapter(
    name="qwen-image-edit",
    diffusers_classes=("QwenImageEditPipeline",),
    reference=ReferenceSpec(
        # Both libraries tokenize through the Qwen2VLProcessor (ids with `<|image_pad|>` expanded), not the
        # tokenizer component: Diffusers' pipeline component `processor`, SGLang's ImageEncodingStage.image_processor.
        tokenizers=("processor",),
        # Diffusers' QwenImageEditPipeline.encode_prompt returns (prompt_embeds, prompt_embeds_mask).
        encode_prompt=("prompt_embeds", None),
        # The condition image's packed VAE latents: Diffusers' prepare_latents returns (latents, image_latents),
        # SGLang's ImageVAEEncodingStage fills Req.image_latent.
        prepare_latents=("latents", "image_latents"),
        # Diffusers passes timestep / 1000; SGLang passes t and divides inside its DiT.
        timestep_scale=1000.0,
        cfg_scale_argument="true_cfg_scale",
        # Diffusers takes the PIL `image`, SGLang reads the same pixels from `image_path` (the defaults).
    ),
    port=PortSpec(
        # "Qwen/Qwen-Image-Edit" (not -2509 / -2511, which are the Edit-Plus pipelines).
        model_id="Qwen-Image-Edit",
        pipeline="QwenImageEditPipeline",
        # SGLang's Req.prompt_embeds: [the encoder's last hidden state over text and image tokens, template dropped].
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        tokenizers=("image_processor",),
        latent_fields=(("image_latent", "image_latents"),),
        cfg_scale_argument="true_cfg_scale",
    ),
    # The same Edit chat template on both sides; both drop its 64-token system prefix.
    prompt_templates=(
        "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
        "background), then explain how the user's text instruction should alter or modify the image. Generate a new "
        "image that meets the user's requirements while maintaining consistency with the original input where "
        "appropriate.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    unpadded_tokens=True,
    latent_layout="packed",
    block_lists=("transformer_blocks",),
    block_outputs=("encoder_hidden_states", "hidden_states"),
)
