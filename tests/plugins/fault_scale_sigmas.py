"""Fault: the port's scheduler schedule is 5% off (as with a wrong shift / mu)."""

import functools

from sglang.multimodal_gen.runtime.models.schedulers.scheduling_flow_match_euler_discrete import (
    FlowMatchEulerDiscreteScheduler,
)

_original = FlowMatchEulerDiscreteScheduler.set_timesteps


@functools.wraps(_original)
def set_timesteps(self, *args, **kwargs):
    result = _original(self, *args, **kwargs)
    self.sigmas = self.sigmas * 0.95
    self.timesteps = self.timesteps * 0.95
    return result


FlowMatchEulerDiscreteScheduler.set_timesteps = set_timesteps
