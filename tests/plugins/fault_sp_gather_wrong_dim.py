"""Parallelism fault: the DiT's sequence shards are gathered on the wrong dimension.

Wan splits its tokens inside the DiT and all-gathers the last block's output before unpatchifying.
Gathered along the channels instead of the tokens and viewed back to (batch, tokens, channels), the
tokens come out interleaved rank by rank: every block matches the one-rank run, the DiT's output
does not (Wan, `--port-parallel ulysses=2`).
"""

import functools

from sglang.multimodal_gen.runtime.models.dits import wanvideo

_original = wanvideo.sequence_model_parallel_all_gather


@functools.wraps(_original)
def _gather_on_channels(tensor, dim=-1):
    if dim != 1:
        return _original(tensor, dim=dim)
    batch, _, channels = tensor.shape
    return _original(tensor, dim=2).reshape(batch, -1, channels)


wanvideo.sequence_model_parallel_all_gather = _gather_on_channels
