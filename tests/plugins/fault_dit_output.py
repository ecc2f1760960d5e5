"""Fault: the port's DiT output is 2% too large (as with a wrong final modulation scale)."""

import functools

from sglang.multimodal_gen.runtime.models.dits.flux import FluxTransformer2DModel

_original = FluxTransformer2DModel.forward


@functools.wraps(_original)
def forward(self, *args, **kwargs):
    output = _original(self, *args, **kwargs)
    if isinstance(output, tuple):
        return (output[0] * 1.02, *output[1:])
    return output * 1.02


FluxTransformer2DModel.forward = forward
