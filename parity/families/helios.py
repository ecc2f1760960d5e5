"""Helios text-to-video (Stage 1): one UMT5 encoder, 5-D video latents (B, C, T, H, W) denoised chunk by chunk.

Both pipelines generate the video in chunks of 9 latent frames (33 frames), each conditioned on a multi-term
history of earlier latents (zeros for the first chunk); a case of at most 33 frames is one chunk. SGLang's
HeliosPipeline has no timestep stage: its HeliosChunkedDenoisingStage draws each chunk's noise and sets the
scheduler up itself (per chunk, shifted by mu from the chunk's token count), as Diffusers' __call__ does.
"""

from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec

HELIOS = FamilyAdapter(
    name="helios",
    diffusers_classes=("HeliosPipeline",),
    # Both libraries pass the DiT the timestep in the scheduler's units (0..1000); CFG is two DiT calls
    # (conditional first) on both sides, and its scale is guidance_scale on both sides.
    reference=ReferenceSpec(
        # Diffusers' HeliosPipeline.encode_prompt returns (prompt_embeds, negative_prompt_embeds).
        encode_prompt=("prompt_embeds", "negative_prompt_embeds"),
        cfg_scale_argument="guidance_scale",
    ),
    port=PortSpec(
        # SGLang 0.5.23 registers Helios-Base (Stage 1 only: HeliosT2VConfig) under this hub id (short name).
        model_id="Helios-Base",
        pipeline="HeliosPipeline",
        # SGLang's Req.prompt_embeds / negative_prompt_embeds: [UMT5 sequence, zero-padded to 512].
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        cfg_scale_argument="guidance_scale",
        # HeliosChunkedDenoisingStage calls scheduler.set_timesteps per chunk, draws the chunk's noise and
        # hands it to _denoise_one_chunk (Stage 1) or _denoise_one_chunk_stage2 (pyramid) as `latents`.
        denoising_scheduler="scheduler",
        noise_in_denoising=("_denoise_one_chunk", "_denoise_one_chunk_stage2"),
        # The stage casts the DiT's inputs to HeliosT2VConfig.precision (default bf16), not to dit_precision.
        precision_fields=("precision",),
    ),
    block_lists=("blocks",),
    video=True,
    dit_guidance=False,
)
