"""Confirm (throwaway): the hunyuan-video timestep_preparation/timesteps divergence is the schedule SGLang
asks its scheduler for. Diffusers' HunyuanVideoPipeline.__call__ passes explicit sigmas
np.linspace(1.0, 0.0, steps + 1)[:-1] (pipelines/hunyuan_video/pipeline_hunyuan_video.py:683), which the
scheduler shifts once (shift 7). SGLang's HunyuanConfig keeps the base PipelineConfig.prepare_sigmas
(configs/pipeline_configs/base.py:355, returns None), so TimestepPreparationStage.forward
(runtime/pipelines_core/stages/timestep_preparation.py:158) calls set_timesteps(steps) and SGLang's
FlowMatchEulerDiscreteScheduler.set_timesteps (runtime/models/schedulers/scheduling_flow_match_euler_discrete.py:354)
spaces timesteps linspace(sigma_max, sigma_min) between sigmas that __init__ already shifted (line 163) and shifts
them again: 3 steps give [1000, 876.7, 46.8] against Diffusers' [1000, 933.3, 777.8]. This gives HunyuanConfig
Diffusers' sigmas."""

import numpy as np
from sglang.multimodal_gen.configs.pipeline_configs.hunyuan import HunyuanConfig


def prepare_sigmas(self, sigmas, num_inference_steps):
    return np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1] if sigmas is None else sigmas


HunyuanConfig.prepare_sigmas = prepare_sigmas
