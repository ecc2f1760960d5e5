"""Fault below the float32 floor: the port's Flux attention normalizes q and k with RMSNorm eps 1e-5 (the
default of SGLang's FluxAttention) where the reference uses 1e-6 (the eps not passed through, a constant
slightly off). It moves the blocks' outputs by about 1e-6 relative: every float32 tolerance lets it
through; the float64 audit (`--audit fp64`) flags it."""

import functools

from sglang.multimodal_gen.runtime.models.dits.flux import FluxAttention

_original = FluxAttention.__init__


@functools.wraps(_original)
def __init__(self, *args, **kwargs):
    _original(self, *args, **kwargs)
    for name in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
        norm = getattr(self, name, None)
        if norm is not None:
            norm.variance_epsilon = 1e-5


FluxAttention.__init__ = __init__
