"""Confirm (throwaway): the fp32 sana DiT divergence is the caption norm's epsilon. SGLang's
SanaTransformer2DModel.__init__ (sglang/multimodal_gen/runtime/models/dits/sana.py) builds
`self.caption_norm = RMSNorm(self.inner_dim)`, so SGLang's RMSNorm default eps 1e-6 applies; Diffusers'
SanaTransformer2DModel builds `RMSNorm(inner_dim, eps=1e-5, elementwise_affine=True)`. This gives SGLang's
caption norm Diffusers' 1e-5; nothing else changes."""

import functools

from sglang.multimodal_gen.runtime.models.dits.sana import SanaTransformer2DModel

_original = SanaTransformer2DModel.__init__


@functools.wraps(_original)
def __init__(self, *args, **kwargs):
    _original(self, *args, **kwargs)
    self.caption_norm.variance_epsilon = 1e-5


SanaTransformer2DModel.__init__ = __init__
