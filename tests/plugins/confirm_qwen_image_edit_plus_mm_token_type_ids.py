"""Confirm (throwaway): the fp32 qwen-image-edit-plus prompt_embeds divergence is the reference's missing
mm_token_type_ids. Diffusers 0.37's QwenImageEditPlusPipeline._get_qwen_prompt_embeds calls the Qwen2.5-VL
encoder without them, so transformers 5.19's Qwen2_5_VLModel.compute_3d_position_ids cannot build the mRoPE
positions and gives image tokens 1-D ones. This passes the processor's values (1 on image tokens, 0 elsewhere)
whenever a caller gives images but no mm_token_type_ids; only transformers' class changes (the port runs
SGLang's own encoder)."""

import functools

import torch
from transformers import Qwen2_5_VLForConditionalGeneration

_original = Qwen2_5_VLForConditionalGeneration.forward


@functools.wraps(_original)
def forward(self, input_ids=None, *args, **kwargs):
    if input_ids is not None and kwargs.get("image_grid_thw") is not None and kwargs.get("mm_token_type_ids") is None:
        kwargs["mm_token_type_ids"] = (input_ids == self.config.image_token_id).to(torch.int32)
    return _original(self, input_ids, *args, **kwargs)


Qwen2_5_VLForConditionalGeneration.forward = forward
