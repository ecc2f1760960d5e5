"""Qwen-Image-Edit-Plus (2509): Qwen-Image-Edit with a list of condition images, each named in the prompt
("Picture i: <|vision_start|><|image_pad|><|vision_end|>") and fed to the Qwen2.5-VL encoder at about 384x384,
and packed as VAE latents (about 1024x1024) after the generated tokens."""

from __future__ import annotations

import dataclasses

from parity.families.qwen_image_edit import QWEN_IMAGE_EDIT

QWEN_IMAGE_EDIT_PLUS = dataclasses.replace(
    QWEN_IMAGE_EDIT,
    name="qwen-image-edit-plus",
    diffusers_classes=("QwenImageEditPlusPipeline",),
    # The reference side is Edit's: the processor tapped as tokenizer 0, encode_prompt's (prompt_embeds, mask),
    # prepare_latents' (latents, image_latents: the condition images' packed latents), timestep / 1000.
    port=dataclasses.replace(
        QWEN_IMAGE_EDIT.port,
        # "Qwen/Qwen-Image-Edit-2509": QwenImageEditPlusPipelineConfig (2511 has a DiT config of its own).
        model_id="Qwen-Image-Edit-2509",
        pipeline="QwenImageEditPlusPipeline",
    ),
    # The Edit system prompt (both drop its 64-token prefix) around one picture (the case's one input image).
    prompt_templates=(
        "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
        "background), then explain how the user's text instruction should alter or modify the image. Generate a new "
        "image that meets the user's requirements while maintaining consistency with the original input where "
        "appropriate.<|im_end|>\n<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>{}"
        "<|im_end|>\n<|im_start|>assistant\n",
    ),
)
