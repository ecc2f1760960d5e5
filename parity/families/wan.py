"""Wan2.1 text-to-video: one UMT5 encoder, 5-D video latents (B, C, T, H, W) kept unpacked."""

from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec

WAN = FamilyAdapter(
    name="wan",
    diffusers_classes=("WanPipeline",),
    # Both libraries pass the DiT the timestep in the scheduler's units (0..1000); CFG is two DiT
    # calls (conditional first) on both sides, and its scale is guidance_scale on both sides.
    reference=ReferenceSpec(
        # Diffusers' WanPipeline.encode_prompt returns (prompt_embeds, negative_prompt_embeds).
        encode_prompt=("prompt_embeds", "negative_prompt_embeds"),
        cfg_scale_argument="guidance_scale",
    ),
    port=PortSpec(
        # SGLang 0.5.23 registers Wan2.1 T2V 1.3B under this hub id (short name); its pipeline config
        # (WanT2V480PConfig: flow_shift 3, T5 padded to 512) is the one of the real 1.3B model.
        model_id="Wan2.1-T2V-1.3B-Diffusers",
        pipeline="WanPipeline",
        # SGLang's Req.prompt_embeds / negative_prompt_embeds: [UMT5 sequence, zero-padded to 512].
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        cfg_scale_argument="guidance_scale",
    ),
    block_lists=("blocks",),
    video=True,
    # SGLang's Wan block asserts its modulation (scale_shift_table + temb.float()) is float32: float64 replays
    # keep those tables, and the float32 casts, as they are.
    replay_keeps_float32=("scale_shift_table",),
    # SGLang passes its embedded_cfg_scale (6.0) as `guidance` to Wan's DiT, which never reads it.
    dit_guidance=False,
)
