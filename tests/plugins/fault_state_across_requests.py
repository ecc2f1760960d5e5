"""Fault: state that leaks from one request into the next (as with a step cache, a conditioning
cache or a scheduler that is not reset between requests). The port's first request is clean; from
its second request on, its DiT output is 2% too large. A full run (the process's first port
request) passes; the isolated run of `--mode both` (the second) shows the divergence."""

import functools

from sglang.multimodal_gen.runtime.models.dits.flux import FluxTransformer2DModel
from sglang.multimodal_gen.runtime.pipelines.flux import FluxPipeline

_requests = {"finished": 0}
_original_forward = FluxTransformer2DModel.forward
_original_pipeline_forward = FluxPipeline.forward


@functools.wraps(_original_forward)
def forward(self, *args, **kwargs):
    output = _original_forward(self, *args, **kwargs)
    if not _requests["finished"]:
        return output
    if isinstance(output, tuple):
        return (output[0] * 1.02, *output[1:])
    return output * 1.02


@functools.wraps(_original_pipeline_forward)
def pipeline_forward(self, *args, **kwargs):
    try:
        return _original_pipeline_forward(self, *args, **kwargs)
    finally:
        _requests["finished"] += 1


FluxTransformer2DModel.forward = forward
FluxPipeline.forward = pipeline_forward
