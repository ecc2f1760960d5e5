"""Fault: the port drops 33 tokens of Qwen-Image's chat-template prefix where Diffusers drops 34
(QwenImagePipeline.prompt_template_encode_start_idx = 34): the prompt embeddings keep the prefix's last
token, one more at the start. Patched into SGLang's qwen_image_postprocess_text (the drop_idx default),
which QwenImagePipelineConfig's postprocess_text_funcs name. The token ids match (the template is the
same); prompt_embeds are one token longer and shifted by one (qwen-image-tiny)."""

from sglang.multimodal_gen.configs.pipeline_configs import qwen_image

_original = qwen_image.qwen_image_postprocess_text


def qwen_image_postprocess_text(outputs, _text_inputs, drop_idx=33, return_attention_mask=False):
    return _original(outputs, _text_inputs, drop_idx=drop_idx, return_attention_mask=return_attention_mask)


qwen_image.qwen_image_postprocess_text = qwen_image_postprocess_text
