"""Confirm (throwaway): the bf16 longcat-image latent_preparation/latents divergence is the port's noise dtype.

Diffusers' LongCatImagePipeline.prepare_latents (pipeline_longcat_image.py:420-421) draws the noise in float32
and casts it to the prompt embeddings' dtype (bf16 in a bf16 run). SGLang's LongCatImagePipelineConfig.
get_latent_dtype (configs/pipeline_configs/longcat_image.py:301) returns float32 ("generate in float32 then cast
to bfloat16, matching diffusers") but nothing casts: the port's latents stay float32 through the loop. This casts
them after SGLang's latent preparation, as Diffusers does."""

import functools

from sglang.multimodal_gen.runtime.pipelines_core.stages.latent_preparation import LatentPreparationStage

_original = LatentPreparationStage.forward


@functools.wraps(_original)
def forward(self, batch, server_args):
    batch = _original(self, batch, server_args)
    batch.latents = batch.latents.to(batch.prompt_embeds[0].dtype)
    return batch


LatentPreparationStage.forward = forward
