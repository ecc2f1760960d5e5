"""LongCat-Image: a Qwen2.5-VL text encoder over ids each pipeline assembles itself (a chat-template prefix,
the prompt tokenized in pieces with quoted text character by character and padded to 512, a suffix), a
Flux-like DiT (dual- then single-stream blocks, no guidance embedding) on 2x2-packed latents, CFG with a
per-token norm rescale ("CFG renorm")."""

from __future__ import annotations

from parity.families.base import PortSpec, ReferenceSpec
from parity.families.flux import FluxAdapter

LONGCAT_IMAGE = FluxAdapter(
    name="longcat-image",
    diffusers_classes=("LongCatImagePipeline",),
    reference=ReferenceSpec(
        # Diffusers' LongCatImagePipeline.encode_prompt returns (prompt_embeds, text_ids);
        # prepare_latents returns (latents, latent_image_ids).
        encode_prompt=("prompt_embeds", None),
        prepare_latents=("latents", None),
        # Diffusers passes timestep / 1000 (its DiT multiplies by 1000); SGLang passes t.
        timestep_scale=1000.0,
        # CFG is on for guidance_scale > 1 on both sides, with the negative prompt "" by default.
        cfg_scale_argument="guidance_scale",
        # The prompt body's length is fixed (512): the pipeline takes no max_sequence_length.
        omitted_arguments=("max_sequence_length",),
    ),
    port=PortSpec(
        # "meituan-longcat/LongCat-Image": LongCatImagePipelineConfig.
        model_id="LongCat-Image",
        pipeline="LongCatImagePipeline",
        # Req.prompt_embeds: [the encoder's last hidden state over the 512-token body, template sliced off].
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        cfg_scale_argument="guidance_scale",
    ),
    # The pipelines build the encoder's ids from several tokenizer calls: compare what the encoder receives.
    encoder_input_ids=True,
    # Both default to rewriting the prompt with the encoder's generate() first: off, so the case's prompt is
    # encoded; CFG renorm (both default on) and its floor set explicitly.
    call_inputs=(("enable_prompt_rewrite", False), ("enable_cfg_renorm", True), ("cfg_renorm_min", 0.0)),
    latent_layout="packed",
    block_lists=("transformer_blocks", "single_transformer_blocks"),
    block_outputs=("encoder_hidden_states", "hidden_states"),
    # No guidance embedding: Diffusers passes guidance=None, SGLang's DiT ignores what it is given.
    dit_guidance=False,
)
