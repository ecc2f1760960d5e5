"""Confirm (throwaway): the bf16 hunyuan-video latent_preparation/latents divergence is the dtype the initial
noise is drawn in. SGLang's LatentPreparationStage (runtime/pipelines_core/stages/latent_preparation.py:93)
draws it in `pipeline_config.get_latent_dtype(prompt_embeds dtype)`; HunyuanConfig does not override the base
(configs/pipeline_configs/base.py:456, returns the prompt dtype: bf16 in a bf16 run), while Diffusers'
HunyuanVideoPipeline.__call__ passes torch.float32 to prepare_latents
(pipelines/hunyuan_video/pipeline_hunyuan_video.py:700) and keeps the latents in fp32 between steps.
This gives HunyuanConfig float32 latents."""

import torch
from sglang.multimodal_gen.configs.pipeline_configs.hunyuan import HunyuanConfig


def get_latent_dtype(self, prompt_dtype: torch.dtype) -> torch.dtype:
    return torch.float32


HunyuanConfig.get_latent_dtype = get_latent_dtype
