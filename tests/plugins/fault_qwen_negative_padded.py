"""Fault: the port's Qwen-Image negative branch gets the negative prompt's embedding zero-padded to the
prompt's length, with no mask (as if padded for one batched CFG call, then run branch by branch): the
padding tokens take part in the joint attention. Patched into SGLang's QwenImagePipelineConfig
(get_neg_prompt_embeds and prepare_neg_cond_kwargs, whose RoPE text lengths follow the padded length).
Text encoding, the conditional branch and its blocks match; only noise_pred_uncond differs (qwen-image-tiny)."""

import torch.nn.functional as F
from sglang.multimodal_gen.configs.pipeline_configs.qwen_image import QwenImagePipelineConfig


def _padded_negative(batch):
    negative, positive = batch.negative_prompt_embeds[0], batch.prompt_embeds[0]
    missing = positive.shape[1] - negative.shape[1]
    return F.pad(negative, (0, 0, 0, missing)) if missing > 0 else negative


def get_neg_prompt_embeds(self, batch):
    return [_padded_negative(batch)]


def prepare_neg_cond_kwargs(self, batch, device, rotary_emb, dtype):
    return self._prepare_cond_kwargs(batch, [_padded_negative(batch)], rotary_emb, device, dtype, negative=True)


QwenImagePipelineConfig.get_neg_prompt_embeds = get_neg_prompt_embeds
QwenImagePipelineConfig.prepare_neg_cond_kwargs = prepare_neg_cond_kwargs
