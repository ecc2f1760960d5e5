"""Confirm (throwaway): the zimage-tiny timestep_preparation/timesteps divergence is the sigma schedule SGLang
asks its scheduler for. Diffusers' ZImagePipeline.__call__ sets `self.scheduler.sigma_min = 0.0` and calls
retrieve_timesteps without sigmas (pipelines/z_image/pipeline_z_image.py:477-479), so
FlowMatchEulerDiscreteScheduler.set_timesteps (schedulers/scheduling_flow_match_euler_discrete.py:335-340)
spaces timesteps linspace(1000 * sigma_max, 1000 * sigma_min, N) = linspace(1000, 0, N), divides by 1000,
shifts them (line 350) and appends a terminal sigma 0 (line 379): the last step is at t = 0. SGLang's
ZImagePipelineConfig.prepare_sigmas (configs/pipeline_configs/zimage.py:111) returns
ImagePipelineConfig._prepare_sigmas (configs/pipeline_configs/base.py:1253), linspace(1, 1/N, N), which
TimestepPreparationStage.forward (runtime/pipelines_core/stages/timestep_preparation.py:105, 153) hands to
set_timesteps(sigmas=...); SGLang's scheduler (runtime/models/schedulers/scheduling_flow_match_euler_discrete.py:361,
371, 420) shifts those the same way and appends the same terminal 0, so only the unshifted sigmas differ
(3 steps, shift 3: 1000, 857.1, 600 against Diffusers' 1000, 750, 0). This gives ZImagePipelineConfig the
unshifted sigmas Diffusers' scheduler builds: linspace(1000, 0, N) / 1000, with sigma 0 at the last step."""

import numpy as np
from sglang.multimodal_gen.configs.pipeline_configs.zimage import ZImagePipelineConfig


def prepare_sigmas(self, sigmas, num_inference_steps):
    return np.linspace(1000.0, 0.0, num_inference_steps) / 1000.0 if sigmas is None else sigmas


ZImagePipelineConfig.prepare_sigmas = prepare_sigmas
