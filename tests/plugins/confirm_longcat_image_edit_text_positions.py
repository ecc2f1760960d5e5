"""Confirm (throwaway): the fp32 longcat-image-edit prompt_embeds divergence is the reference's RoPE positions.

Diffusers' LongCatImageEditPipeline._encode_prompt (pipeline_longcat_image_edit.py:331) calls the Qwen2.5-VL
encoder with ids, mask, pixel_values and image_grid_thw but no `mm_token_type_ids`, so transformers 5.19's
Qwen2_5_VLModel.compute_3d_position_ids (modeling_qwen2_5_vl.py:1178) builds no multimodal (3-D) positions and the
text model counts plain positions over every token (modeling_qwen2_5_vl.py:812), LongCat's mid-sequence padding
included. SGLang's encoder (Qwen2_5_VLModel.get_rope_index, runtime/models/encoders/qwen2_5vl.py:645) builds the
3-D positions over the attended tokens and puts padding at position 1, as transformers 4.x did; the image tokens'
and the padding's hidden states (both part of LongCat-Edit's prompt_embeds) then differ. This gives transformers'
encoder those positions: its own get_rope_index with the image tokens marked, padding at 1. Only transformers'
class changes (the port runs SGLang's own encoder)."""

import functools

import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

_original = Qwen2_5_VLModel.forward


@functools.wraps(_original)
def forward(self, input_ids=None, attention_mask=None, position_ids=None, *args, **kwargs):
    grid = kwargs.get("image_grid_thw")
    if position_ids is None and input_ids is not None and attention_mask is not None and grid is not None:
        mm_token_type_ids = (input_ids == self.config.image_token_id).to(torch.int32)
        position_ids, _ = self.get_rope_index(
            input_ids, image_grid_thw=grid, attention_mask=attention_mask, mm_token_type_ids=mm_token_type_ids
        )
        position_ids = position_ids.masked_fill(attention_mask[None] == 0, 1)
    return _original(self, input_ids, attention_mask, position_ids, *args, **kwargs)


Qwen2_5_VLModel.forward = forward
