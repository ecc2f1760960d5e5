"""Stable Diffusion 3: three text encoders merged into one sequence; latents kept unpacked."""

from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec

SD3 = FamilyAdapter(
    name="sd3",
    diffusers_classes=("StableDiffusion3Pipeline",),
    reference=ReferenceSpec(
        encode_prompt=(
            "prompt_embeds",
            "negative_prompt_embeds",
            "pooled_prompt_embeds",
            "negative_pooled_prompt_embeds",
        ),
        # Diffusers' SD3 runs both CFG branches as one DiT call (uncond, cond) and takes the CFG scale
        # as guidance_scale; SGLang runs the branches one by one, conditional first.
        cfg_batch="uncond_cond",
        cfg_scale_argument="guidance_scale",
    ),
    port=PortSpec(
        # SGLang 0.5.23 registers SD3 under hub ids; the short name matches its registry, the full
        # "stabilityai/..." id does not (it falls back to the Diffusers backend).
        model_id="stable-diffusion-3-medium-diffusers",
        pipeline="StableDiffusion3Pipeline",
        # SGLang's SD3ConditioningStage merges CLIP-L, CLIP-G and T5 into Req.prompt_embeds[0] and the
        # pooled vectors into Req.pooled_embeds[0], as Diffusers' encode_prompt returns them.
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        pooled_fields=(
            ("pooled_embeds", ("pooled_prompt_embeds",)),
            ("neg_pooled_embeds", ("negative_pooled_prompt_embeds",)),
        ),
        cfg_scale_argument="guidance_scale",
    ),
    block_lists=("transformer_blocks",),
    block_outputs=("encoder_hidden_states", "hidden_states"),
)
