"""Confirm (throwaway): the bf16 sana latent_preparation/latents divergence is the dtype the initial noise is
drawn in. SGLang's LatentPreparationStage (runtime/pipelines_core/stages/latent_preparation.py:93) draws it in
`pipeline_config.get_latent_dtype(prompt_embeds dtype)`; SanaPipelineConfig does not override the base
(configs/pipeline_configs/base.py:456, returns the prompt dtype: bf16 in a bf16 run), while Diffusers'
SanaPipeline.__call__ passes torch.float32 to prepare_latents (pipelines/sana/pipeline_sana.py:945).
SGLang's own SanaVideoPipelineConfig returns float32. This gives SanaPipelineConfig the same."""

import torch
from sglang.multimodal_gen.configs.pipeline_configs.sana import SanaPipelineConfig


def get_latent_dtype(self, prompt_dtype: torch.dtype) -> torch.dtype:
    return torch.float32


SanaPipelineConfig.get_latent_dtype = get_latent_dtype
