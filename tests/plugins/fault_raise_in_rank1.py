"""Fault: the port fails in one of its ranks only (rank 1 of 2, in its DiT's first call), as a shard
shape bug would. Rank 0 then waits in a collective that never completes: parity must stop it, end
with exit 2 naming rank 1, and keep rank 1's traceback in the report directory. The one-rank run
(WORLD_SIZE 1) is untouched."""

import functools
import os

from sglang.multimodal_gen.runtime.models.dits.qwen_image import QwenImageTransformer2DModel

_original = QwenImageTransformer2DModel.forward


@functools.wraps(_original)
def forward(self, *args, **kwargs):
    if os.environ.get("WORLD_SIZE") == "2" and os.environ.get("RANK") == "1":
        raise RuntimeError("shard of 25 tokens cannot be viewed as (1, 24, 64) [injected fault in rank 1]")
    return _original(self, *args, **kwargs)


QwenImageTransformer2DModel.forward = forward
