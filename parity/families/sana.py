"""Sana (text-to-image): one Gemma2 text encoder, a linear-attention DiT on unpacked 4-D latents
(B, C, H, W), a DC-AE decoder (spatial factor 32) and a DPM-Solver++ flow schedule."""

from __future__ import annotations

from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec


class SanaAdapter(FamilyAdapter):
    def prompt_texts(self, prompt: str) -> set[str]:
        # Diffusers' SanaPipeline._text_preprocessing lower-cases and strips the prompt before tokenizing.
        return super().prompt_texts(prompt) | {prompt.lower().strip()}


SANA = SanaAdapter(
    name="sana",
    diffusers_classes=("SanaPipeline",),
    reference=ReferenceSpec(
        # Diffusers' SanaPipeline.encode_prompt returns (prompt_embeds, prompt_attention_mask,
        # negative_prompt_embeds, negative_prompt_attention_mask).
        encode_prompt=("prompt_embeds", None, "negative_prompt_embeds", None),
        # Diffusers runs both CFG branches as one DiT call (uncond, cond); CFG's scale is guidance_scale on
        # both sides. Its DiT gets t * timestep_scale (1.0 here): the scheduler's units, as SGLang's.
        cfg_batch="uncond_cond",
        cfg_scale_argument="guidance_scale",
        # Diffusers' defaults turn on two features SGLang's SanaPipeline does not have: a "complex human
        # instruction" prepended to the prompt, and binning the size to an aspect-ratio table (a 128 px
        # request would run at 1024 px, then be resized). Off here, so the rest is compared like for like.
        call_inputs=(("complex_human_instruction", None), ("use_resolution_binning", False)),
    ),
    port=PortSpec(
        # SGLang 0.5.23 registers Sana under its hub ids; the short name matches its registry.
        model_id="Sana_1600M_1024px_diffusers",
        pipeline="SanaPipeline",
        # Req.prompt_embeds / negative_prompt_embeds: [Gemma2's last hidden state].
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        cfg_scale_argument="guidance_scale",
    ),
    block_lists=("transformer_blocks",),
    # Sana has no embedded guidance (guidance_embeds off, as in the real 1600M / 600M models).
    dit_guidance=False,
)
