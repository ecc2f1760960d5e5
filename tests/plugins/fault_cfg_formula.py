"""Fault: the port's CFG combination uses cond + s * (cond - uncond) instead of
uncond + s * (cond - uncond). Both branches stay equal; only the guided prediction differs."""

import functools

from sglang.multimodal_gen.runtime.distributed.cfg_policy import CFGPolicy

_original = CFGPolicy.combine


@functools.wraps(_original)
def combine(self, predictions, batch, cfg_scale, pipeline_config, **kwargs):
    if len(predictions) == 2:
        cond, uncond = predictions
        predictions = [cond, 2 * cond - uncond]  # so that n + s * (p - n) = cond + s * (cond - uncond)
    return _original(self, predictions, batch, cfg_scale, pipeline_config, **kwargs)


CFGPolicy.combine = combine
