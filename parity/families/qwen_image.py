"""Qwen-Image: one Qwen2.5-VL text encoder (chat template, system prefix dropped), latents packed 2x2."""

from parity.families.base import PortSpec, ReferenceSpec, SequenceShards
from parity.families.flux import FluxAdapter

QWEN_IMAGE = FluxAdapter(
    name="qwen-image",
    diffusers_classes=("QwenImagePipeline",),
    reference=ReferenceSpec(
        # Diffusers' QwenImagePipeline.encode_prompt returns (prompt_embeds, prompt_embeds_mask).
        encode_prompt=("prompt_embeds", None),
        # Diffusers passes timestep / 1000; SGLang passes t and divides inside its DiT.
        timestep_scale=1000.0,
        # True CFG (with a per-token norm rescale) is `true_cfg_scale` on both sides.
        cfg_scale_argument="true_cfg_scale",
    ),
    port=PortSpec(
        model_id="Qwen-Image",
        pipeline="QwenImagePipeline",
        # SGLang's Req.prompt_embeds for Qwen-Image: [the encoder's last hidden state, template dropped].
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        cfg_scale_argument="true_cfg_scale",
        # Sequence parallel: SGLang splits the packed latents before the denoising loop (QwenImage's
        # pipeline config, shard_latents_for_sp), so everything the loop records is a token shard.
        sequence_shards=SequenceShards(
            denoising=("dit_input", "noise_pred_cond", "noise_pred_uncond", "noise_pred", "latents")
        ),
    ),
    # Both libraries wrap the prompt in the same chat template, then drop its 34-token system prefix.
    prompt_templates=(
        "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
        "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    # Only the masked tokens' hidden states are kept, so padding never reaches the DiT: Diffusers pads
    # to the longest text, SGLang to its encoder's text_len (512).
    unpadded_tokens=True,
    # The same 2x2 packing of latents into tokens as Flux (Diffusers' _pack_latents).
    latent_layout="packed",
    block_lists=("transformer_blocks",),
    block_outputs=("encoder_hidden_states", "hidden_states"),
    # Both DiTs embed the timestep through diffusers' `Timesteps` (scale 1000: it receives t / 1000).
    time_embedding_inputs=True,
)
