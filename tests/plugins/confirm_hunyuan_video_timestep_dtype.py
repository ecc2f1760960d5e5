"""Confirm (throwaway): the bf16 hunyuan-video step >= 1 text-stream divergence (denoising/encoder_hidden_states
block embedders, the token refiner's output) is the dtype of the timestep handed to the DiT. Diffusers'
HunyuanVideoPipeline.__call__ casts it to the latents' dtype (pipelines/hunyuan_video/pipeline_hunyuan_video.py:721,
`t.expand(...).to(latents.dtype)`), and its scheduler step returns the latents in the DiT output's dtype
(schedulers/scheduling_flow_match_euler_discrete.py:519): from step 1 on a bf16 run hands its DiT a bf16-rounded
timestep (933.3 -> 932, 777.8 -> 776). SGLang's DenoisingStage.expand_timestep_before_forward
(runtime/pipelines_core/stages/denoising.py:1975) passes the scheduler's fp32 timestep as is. This casts SGLang's
HunyuanVideo timestep to the DiT's dtype, as Diffusers' effectively is (step 0's 1000 is exact in bf16)."""

from sglang.multimodal_gen.configs.pipeline_configs.hunyuan import HunyuanConfig
from sglang.multimodal_gen.runtime.pipelines_core.stages.denoising import DenoisingStage

_original = DenoisingStage.expand_timestep_before_forward


def expand_timestep_before_forward(self, batch, server_args, t_device, target_dtype, *args, **kwargs):
    timestep = _original(self, batch, server_args, t_device, target_dtype, *args, **kwargs)
    if isinstance(server_args.pipeline_config, HunyuanConfig):
        return timestep.to(target_dtype)
    return timestep


DenoisingStage.expand_timestep_before_forward = expand_timestep_before_forward
