"""Confirm (throwaway): the fp32 longcat-image prompt_embeds divergence is the reference's text RoPE positions.

LongCat's 512-token prompt body is padded in the middle of the sequence (prefix, prompt, padding, suffix).
For text-only input, transformers 5.19's Qwen2_5_VLModel.compute_3d_position_ids (modeling_qwen2_5_vl.py:1134)
returns None without mm_token_type_ids, so the language model counts positions over every token, padding
included (arange). SGLang's encoder (QwenVLModelBase._get_text_rope_index, encoders/qwen_vl.py:23) keeps the
rule transformers 4.x's get_rope_index had: positions count only attended tokens, padding at position 1. The
padding's hidden states (part of LongCat's prompt_embeds) then differ. This gives transformers' encoder the
4.x positions for text-only input with a padding mask; only transformers' class changes (the port runs
SGLang's own encoder)."""

import functools

from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

_original = Qwen2_5_VLModel.forward


@functools.wraps(_original)
def forward(self, input_ids=None, attention_mask=None, position_ids=None, *args, **kwargs):
    text_only = kwargs.get("pixel_values") is None and kwargs.get("image_grid_thw") is None
    if position_ids is None and text_only and attention_mask is not None and not bool(attention_mask.all()):
        position_ids = attention_mask.long().cumsum(-1) - 1
        position_ids = position_ids.masked_fill(attention_mask == 0, 1).unsqueeze(0).expand(3, -1, -1)
    return _original(self, input_ids, attention_mask, position_ids, *args, **kwargs)


Qwen2_5_VLModel.forward = forward
