"""SANA-Video (text-to-video): one Gemma2 text encoder fed a "complex human instruction" + the prompt, a
linear-attention DiT with 3-D RoPE on 5-D video latents (B, C, T, H, W) kept unpacked, the Wan VAE and a
DPM-Solver++ flow schedule."""

from __future__ import annotations

import functools
import inspect

from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec


@functools.cache
def _instruction() -> str:
    """The instruction both libraries prepend to the (lower-cased) prompt: Diffusers' default
    `complex_human_instruction`, joined by newlines (SGLang hard-codes the same text)."""
    from diffusers import SanaVideoPipeline

    default = inspect.signature(SanaVideoPipeline.__call__).parameters["complex_human_instruction"].default
    return "\n".join(default)


class SanaVideoAdapter(FamilyAdapter):
    def prompt_texts(self, prompt: str) -> set[str]:
        # Both sides lower-case and strip the prompt, then tokenize it behind the instruction.
        normalized = prompt.lower().strip()
        return super().prompt_texts(prompt) | {normalized, _instruction() + normalized}


SANA_VIDEO = SanaVideoAdapter(
    name="sana-video",
    diffusers_classes=("SanaVideoPipeline",),
    reference=ReferenceSpec(
        # Diffusers' SanaVideoPipeline.encode_prompt returns (prompt_embeds, prompt_attention_mask,
        # negative_prompt_embeds, negative_prompt_attention_mask).
        encode_prompt=("prompt_embeds", None, "negative_prompt_embeds", None),
        # One DiT call on (uncond, cond); its DiT gets t in the scheduler's units, as SGLang's.
        cfg_batch="uncond_cond",
        cfg_scale_argument="guidance_scale",
        num_frames_argument="frames",
        # Binning the size to an aspect-ratio table (Diffusers' default; SGLang has none): off.
        call_inputs=(("use_resolution_binning", False),),
    ),
    port=PortSpec(
        # SGLang 0.5.23 registers SANA-Video under this hub id (short name).
        model_id="SANA-Video_2B_480p_diffusers",
        pipeline="SanaVideoPipeline",
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        cfg_scale_argument="guidance_scale",
    ),
    block_lists=("transformer_blocks",),
    video=True,
    dit_guidance=False,
)
