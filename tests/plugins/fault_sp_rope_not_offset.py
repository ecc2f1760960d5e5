"""Parallelism fault: the image RoPE cache is not offset for a sequence shard.

Every sequence-parallel rank takes the first shard's positions (rank 0's) instead of its own, as a
port does that forgets the rank's offset when it splits the positions with the tokens. One rank
runs the same as before; the others rotate their queries and keys by the wrong positions, so the
first block already differs from the one-rank run (Qwen-Image, `--port-parallel ulysses=2`).
"""

import dataclasses

from sglang.multimodal_gen.configs.pipeline_configs import qwen_image
from sglang.multimodal_gen.runtime.distributed.sp_shard_utils import build_shard_plan, shard_like


def _rank0_positions(emb):
    plan = build_shard_plan(emb.shape[0])
    return shard_like(emb, dataclasses.replace(plan, sp_rank=0), dim=0, pad_mode="repeat_last")


qwen_image.shard_rotary_emb_for_sp = _rank0_positions
