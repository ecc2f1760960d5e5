"""LongCat-Image-Edit: LongCat-Image conditioned on an input image, which reaches the DiT twice: through the
Qwen2.5-VL encoder (the template prefix carries the image's `<|image_pad|>` tokens, which stay in the
embeddings) and as VAE latents packed into tokens appended after the generated ones. Both size the output
from the image (about 1024x1024); plain CFG (no renorm, no prompt rewriting)."""

from __future__ import annotations

from parity.families.base import PortSpec, ReferenceSpec
from parity.families.qwen_image_edit import QwenImageEditAdapter

# QwenImageEditAdapter: Flux's 2x2 packing, and the DiT's output cut to the generated tokens (16 px each).
LONGCAT_IMAGE_EDIT = QwenImageEditAdapter(
    name="longcat-image-edit",
    diffusers_classes=("LongCatImageEditPipeline",),
    reference=ReferenceSpec(
        # Diffusers' encode_prompt returns (prompt_embeds, text_ids); prepare_latents returns
        # (latents, image_latents, latents_ids, image_latents_ids): image_latents are the input image's packed latents.
        encode_prompt=("prompt_embeds", None),
        prepare_latents=("latents", "image_latents", None, None),
        timestep_scale=1000.0,
        cfg_scale_argument="guidance_scale",
        # The output size comes from the image and the prompt body's length is fixed (512).
        omitted_arguments=("max_sequence_length", "height", "width"),
    ),
    port=PortSpec(
        # "meituan-longcat/LongCat-Image-Edit" (not -Turbo): LongCatImageEditPipelineConfig.
        model_id="LongCat-Image-Edit",
        pipeline="LongCatImageEditPipeline",
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        latent_fields=(("image_latent", "image_latents"),),
        cfg_scale_argument="guidance_scale",
        # SGLang's Edit takes (and defaults off) what Diffusers' Edit pipeline lacks: set explicitly.
        call_inputs=(("enable_prompt_rewrite", False), ("enable_cfg_renorm", False)),
    ),
    encoder_input_ids=True,
    latent_layout="packed",
    block_lists=("transformer_blocks", "single_transformer_blocks"),
    block_outputs=("encoder_hidden_states", "hidden_states"),
    dit_guidance=False,
)
