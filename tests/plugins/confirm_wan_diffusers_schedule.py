"""Confirms wan-t2v-tiny's fp32 divergence (fixtures/cases/wan-t2v-tiny.toml): SGLang's Wan replaces the
model's scheduler by FlowUniPCMultistepScheduler, which starts from linspace(sigma_max, 0) with the shift
applied twice; Diffusers' UniPCMultistepScheduler (use_flow_sigmas) starts from linspace(1, 1/1000) with the
shift applied once. This sets SGLang's schedule the way Diffusers' does (sigmas, then the integer timesteps),
so that a fault plugin stacked after it is the only divergence of a Wan run.
"""

import functools

import numpy as np
import torch
from sglang.multimodal_gen.runtime.models.schedulers.scheduling_flow_unipc_multistep import (
    FlowUniPCMultistepScheduler,
)

_original = FlowUniPCMultistepScheduler.set_timesteps


@functools.wraps(_original)
def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, shift=None):
    _original(self, num_inference_steps, device, sigmas, mu, shift)
    if sigmas is not None or self.config.use_dynamic_shifting:
        return  # a schedule given by the caller, or dynamic shifting: not what Wan's T2V does
    # Diffusers' UniPCMultistepScheduler.set_timesteps, use_flow_sigmas branch
    train = self.config.num_train_timesteps
    flow_shift = self.config.shift if shift is None else shift
    values = np.linspace(1, 1 / train, num_inference_steps + 1)[:-1]
    values = flow_shift * values / (1 + (flow_shift - 1) * values)
    if np.fabs(values[0] - 1) < 1e-6:
        values[0] -= 1e-6
    timesteps = (values * train).copy()
    last = values[-1] if self.config.final_sigmas_type == "sigma_min" else 0
    self.sigmas = torch.from_numpy(np.concatenate([values, [last]]).astype(np.float32)).to(device=device)
    self.timesteps = torch.from_numpy(timesteps).to(device=device, dtype=torch.int64)


FlowUniPCMultistepScheduler.set_timesteps = set_timesteps
