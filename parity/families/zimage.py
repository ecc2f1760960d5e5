"""Z-Image: one Qwen3 text encoder whose embeddings keep each prompt's native length, and a single-stream
DiT on per-sample lists: an image refiner, a caption refiner, then main blocks on their concatenation."""

from __future__ import annotations

import torch

from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec
from parity.trace import Record


class ZImageAdapter(FamilyAdapter):
    def to_canonical(self, record: Record) -> torch.Tensor:
        value = super().to_canonical(record)
        # SGLang's Req keeps one prompt's embeddings as (L, D) (native length, no padding); Diffusers
        # returns a per-prompt list, recorded as a batch (1, L, D).
        if record.key.tensor.endswith("prompt_embeds") and value.ndim == 2:
            return value.unsqueeze(0)
        return value

    def convert(self, record: Record) -> torch.Tensor:
        if record.layout == "latents_bcthw":  # (B, C, 1, H, W) with one frame, or already (B, C, H, W)
            value = record.value
            return value[:, :, 0] if value.ndim == 5 and value.shape[2] == 1 else value
        return super().convert(record)


ZIMAGE = ZImageAdapter(
    name="zimage",
    diffusers_classes=("ZImagePipeline",),
    # Diffusers calls its DiT as (x, t, cap_feats) with t = (1000 - t) / 1000 and negates the output
    # itself; SGLang passes hidden_states and timestep=t, and its DiT negates inside.
    reference=ReferenceSpec(
        # Diffusers' ZImagePipeline.encode_prompt returns (prompt_embeds, negative_prompt_embeds), per-prompt lists.
        encode_prompt=("prompt_embeds", "negative_prompt_embeds"),
        dit_arguments=("x", "t", "guidance"),
        timestep_scale=-1000.0,
        timestep_offset=1000.0,
        dit_output_scale=-1.0,
        # Diffusers runs both CFG branches as one DiT call, conditional first; CFG is cond + s * (cond - uncond)
        # with s = guidance_scale on both sides.
        cfg_batch="cond_uncond",
        cfg_scale_argument="guidance_scale",
    ),
    port=PortSpec(
        # "Tongyi-MAI/Z-Image" (CFG model; "Z-Image-Turbo" maps to the same pipeline with turbo defaults).
        model_id="Z-Image",
        pipeline="ZImagePipeline",
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        cfg_scale_argument="guidance_scale",
    ),
    # Both sides tokenize the chat-templated prompt (apply_chat_template, generation prompt, thinking on).
    prompt_templates=("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",),
    # Diffusers keeps latents (B, C, H, W) and hands its DiT one (C, 1, H, W) per sample; SGLang keeps (B, C, 1, H, W).
    latent_layout="latents_bcthw",
    block_lists=("noise_refiner", "context_refiner", "layers"),
    block_inputs=("x",),
    block_lists_chained=False,
    dit_guidance=False,
    # CFG renormalization: off by default in Diffusers, on in SGLang's Z-Image sampling params.
    call_inputs=(("cfg_normalization", False),),
)
