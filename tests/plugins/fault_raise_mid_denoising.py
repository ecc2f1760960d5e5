"""Fault: the port raises in the middle of denoising (its DiT's second call), as a port with a shape
bug on a later step would. SGLang prints its own long, coloured traceback; parity must end with exit
2, one line on the console, the library's output in libraries.log and the port's class named."""

import functools

from sglang.multimodal_gen.runtime.models.dits.flux import FluxTransformer2DModel

_original = FluxTransformer2DModel.forward
_calls = {"n": 0}


@functools.wraps(_original)
def forward(self, *args, **kwargs):
    _calls["n"] += 1
    if _calls["n"] == 2:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x24 and 32x64) [injected fault]")
    return _original(self, *args, **kwargs)


FluxTransformer2DModel.forward = forward
