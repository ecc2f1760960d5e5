"""HunyuanVideo: a Llama text encoder (templated prompt, 95-token system prefix cropped) and CLIP's pooled
vector, 5-D video latents (B, C, T, H, W), a DiT of dual-stream then single-stream blocks."""

from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec

# Both pipelines wrap the prompt in this template before the Llama tokenizer, then crop its first 95 tokens.
PROMPT_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)

HUNYUAN_VIDEO = FamilyAdapter(
    name="hunyuan-video",
    diffusers_classes=("HunyuanVideoPipeline",),
    reference=ReferenceSpec(
        # Diffusers' HunyuanVideoPipeline.encode_prompt returns (prompt_embeds, pooled_prompt_embeds,
        # prompt_attention_mask).
        encode_prompt=("prompt_embeds", "pooled_prompt_embeds", None),
    ),
    port=PortSpec(
        # SGLang 0.5.23 registers hunyuanvideo-community/HunyuanVideo (short name "HunyuanVideo") with
        # HunyuanConfig (flow_shift 7, embedded_cfg_scale 6).
        model_id="HunyuanVideo",
        pipeline="HunyuanVideoPipeline",
        # SGLang's Req.prompt_embeds: [the Llama sequence (template cropped), CLIP's pooled vector].
        prompt_embeds=("prompt_embeds", "pooled_prompt_embeds"),
        repeated_embeds=(("pooled_embeds", ("pooled_prompt_embeds",)),),
        # SGLang names the block lists double_blocks / single_blocks; its dual-stream blocks take the image
        # and text streams as (img, txt), its single-stream blocks take and return them joined as one
        # x = cat(image, text) with the text length txt_len (Diffusers' return the two apart).
        block_lists=(("transformer_blocks", "double_blocks"), ("single_transformer_blocks", "single_blocks")),
        block_inputs=("img", "txt"),
        joined_blocks=(("single_transformer_blocks", "x", "txt_len"),),
    ),
    prompt_templates=(PROMPT_TEMPLATE,),
    # CLIP: Diffusers pads to 77, SGLang does not pad; padding never reaches the DiT.
    unpadded_tokens=True,
    block_lists=("transformer_blocks", "single_transformer_blocks"),
    block_outputs=("hidden_states", "encoder_hidden_states"),
    video=True,
)
