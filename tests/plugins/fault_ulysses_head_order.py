"""Parallelism fault: Ulysses puts the attention heads back in the wrong order.

After attention, each rank's heads return through the output all-to-all; here the ranks' head groups
come back swapped (rank 1's heads where rank 0's belong), as a port does that mixes up the order of
its head split. Attention output projections then mix the wrong heads: the first block differs
from the one-rank run (Qwen-Image, `--port-parallel ulysses=2`).
"""

import functools

import torch
from sglang.multimodal_gen.runtime.layers.attention import layer


def _swap_head_groups(original):
    @functools.wraps(original)
    def wrapped(x, *args, **kwargs):
        out = original(x, *args, **kwargs)
        head_dim = kwargs.get("head_dim", args[-1] if args else 1)
        return torch.cat(out.chunk(2, dim=head_dim)[::-1], dim=head_dim)

    return wrapped


layer._usp_output_all_to_all = _swap_head_groups(layer._usp_output_all_to_all)
