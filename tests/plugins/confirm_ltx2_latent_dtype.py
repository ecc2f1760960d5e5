"""Confirm (throwaway): the bf16 ltx2 latent_preparation/audio_latents (and latents) divergence is the dtype the
initial noise is drawn in. SGLang's LTX2AVLatentPreparationStage._get_latent_dtype
(runtime/pipelines_core/stages/model_specific_stages/ltx_2/latent_preparation_av.py:83) draws both the video and
the audio noise in the prompt embeddings' dtype (bf16 in a bf16 run) for LTX-2, while Diffusers'
LTX2Pipeline.__call__ draws both in float32 (prepare_latents(..., torch.float32, ...) and
prepare_audio_latents(dtype=torch.float32); pipelines/ltx2/pipeline_ltx2.py:997 and :1035) and keeps them so between
steps. This draws SGLang's LTX-2 noise in float32 too."""

import torch
from sglang.multimodal_gen.runtime.pipelines_core.stages.model_specific_stages.ltx_2 import (
    LTX2AVLatentPreparationStage,
)


def _get_latent_dtype(self, batch, server_args) -> torch.dtype:
    return torch.float32


LTX2AVLatentPreparationStage._get_latent_dtype = _get_latent_dtype
