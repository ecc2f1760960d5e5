"""Merging the port's rank traces into one (parity.rank_merge), on synthetic traces cut the way SGLang
cuts them: whole tensors on every rank, sequence shards padded at the end of the last one, CFG
branches on different ranks."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import stages
from parity.families.base import SequenceShards
from parity.rank_merge import RankTrace, merge
from parity.trace import Key, Trace

BLOCKS_ONLY = SequenceShards()
DENOISING = SequenceShards(denoising=("noise_pred", "latents"))


def rank(index, tp=0, sp=0, cfg=0):
    return {"rank": index, "tp": tp, "sp": sp, "ulysses": sp, "ring": 0, "cfg": cfg}


def shards(whole, sp, dim=1):
    """SGLang's split: pad the end to a multiple of `sp`, then equal contiguous chunks (the pad rows
    are not zeros after a block: here they are 99)."""
    length = whole.shape[dim]
    local = -(-length // sp)
    pad_shape = list(whole.shape)
    pad_shape[dim] = local * sp - length
    padded = torch.cat([whole, torch.full(pad_shape, 99.0)], dim=dim)
    return list(padded.split(local, dim=dim))


def one_rank_lengths(trace, dim=1):
    return lambda key: trace.get(key).value.shape[dim] if trace.get(key) is not None else None


def test_tensor_parallel_ranks_hold_whole_tensors_taken_from_rank_0_and_held_to_each_other():
    x = torch.randn(1, 6, 4)
    ranks = []
    for index in range(2):
        trace = Trace("port")
        trace.add("prompt_embeds", stages.TEXT_ENCODING, x)
        trace.add("hidden_states", stages.DENOISING, x * 2, step=0, block="blocks.0")
        ranks.append(RankTrace(rank(index, tp=index), trace))
    merged = merge(ranks, BLOCKS_ONLY.may_shard, 1, one_rank_lengths(ranks[0].trace))
    assert [r.key for r in merged.trace] == [Key("prompt_embeds"), Key("hidden_states", 0, "blocks.0")]
    assert torch.equal(merged.trace.get(Key("prompt_embeds")).value, x)
    assert merged.sharded == []
    assert len(merged.agreement) == 2 and all(torch.equal(p.reference, p.port) for p in merged.agreement)


def test_a_rank_that_disagrees_is_the_one_held_against_rank_0():
    x = torch.zeros(1, 4, 2)
    ranks = []
    for index, value in enumerate([x, x, x + 1e-3, x]):
        trace = Trace("port")
        trace.add("prompt_embeds", stages.TEXT_ENCODING, value)
        ranks.append(RankTrace(rank(index, tp=index), trace))
    (pair,) = merge(ranks, BLOCKS_ONLY.may_shard, 1, lambda key: 4).agreement
    assert float((pair.port - pair.reference).abs().max()) == float(torch.tensor(1e-3))


@settings(max_examples=50, deadline=None)
@given(length=st.integers(2, 23), sp=st.integers(2, 4), tp=st.integers(1, 2), width=st.integers(1, 5))
def test_sequence_shards_are_joined_in_sp_order_and_the_end_padding_trimmed(length, sp, tp, width):
    whole = torch.randn(1, length, width)
    one_rank = Trace("port")
    one_rank.add("hidden_states", stages.DENOISING, whole, step=0, block="blocks.1")
    ranks, index = [], 0
    for sp_rank, piece in enumerate(shards(whole, sp)):
        for tp_rank in range(tp):
            trace = Trace("port")
            trace.add("hidden_states", stages.DENOISING, piece, step=0, block="blocks.1")
            ranks.append(RankTrace(rank(index, tp=tp_rank, sp=sp_rank), trace))
            index += 1
    merged = merge(list(reversed(ranks)), BLOCKS_ONLY.may_shard, 1, one_rank_lengths(one_rank))
    assert torch.equal(merged.trace.get(Key("hidden_states", 0, "blocks.1")).value, whole)
    assert merged.sharded == [Key("hidden_states", 0, "blocks.1")]
    assert len(merged.agreement) == (1 if tp > 1 else 0)  # TP copies of a shard are held to each other


def test_a_record_outside_the_declared_scope_is_never_joined():
    """Wan splits tokens inside its DiT: its per-step latents are whole on every rank, even where two
    ranks' values happen to differ (then it is a disagreement, not a shard)."""
    ranks = []
    for index in range(2):
        trace = Trace("port")
        trace.add("latents", stages.DENOISING, torch.full((1, 4, 2), float(index)), step=0)
        ranks.append(RankTrace(rank(index, sp=index), trace))
    merged = merge(ranks, BLOCKS_ONLY.may_shard, 1, lambda key: None)
    assert merged.trace.get(Key("latents", 0)).value.shape == (1, 4, 2) and merged.sharded == []
    (pair,) = merged.agreement
    assert not torch.equal(pair.reference, pair.port)
    joined = merge(ranks, DENOISING.may_shard, 1, lambda key: 8)  # a port that splits its latents
    assert joined.trace.get(Key("latents", 0)).value.shape == (1, 8, 2)


def test_a_whole_record_in_scope_stays_whole_when_its_length_is_the_one_rank_length():
    """Qwen-Image's text stream is not split when the text has a mask: same length on both ranks."""
    text = torch.randn(1, 5, 3)
    ranks = []
    for index in range(2):
        trace = Trace("port")
        trace.add("encoder_hidden_states", stages.DENOISING, text, step=0, block="blocks.0")
        ranks.append(RankTrace(rank(index, sp=index), trace))
    merged = merge(ranks, BLOCKS_ONLY.may_shard, 1, lambda key: 5)
    assert torch.equal(merged.trace.get(Key("encoder_hidden_states", 0, "blocks.0")).value, text)
    assert merged.sharded == []


def test_cfg_parallel_ranks_record_different_branches_and_every_key_is_kept():
    cond, uncond = torch.ones(1, 2), torch.zeros(1, 2)
    ranks = []
    for index, (name, value) in enumerate([("noise_pred_cond", cond), ("noise_pred_uncond", uncond)]):
        trace = Trace("port")
        trace.add("dit_input", stages.DENOISING, torch.full((1, 2), 5.0), step=0)
        trace.add(name, stages.DENOISING, value, step=0)
        ranks.append(RankTrace(rank(index, cfg=index), trace))
    merged = merge(ranks, BLOCKS_ONLY.may_shard, 1, lambda key: None)
    assert [r.key.tensor for r in merged.trace] == ["dit_input", "noise_pred_cond", "noise_pred_uncond"]
    assert torch.equal(merged.trace.get(Key("noise_pred_uncond", 0)).value, uncond)
    assert [p.key.tensor for p in merged.agreement] == ["dit_input"]


def test_a_trace_survives_its_files(tmp_path):
    trace = Trace("port")
    trace.add("input_ids", stages.TEXT_ENCODING, torch.tensor([[1, 2, 3]]))
    trace.add("latents", stages.DENOISING, torch.randn(1, 4, 2).bfloat16(), step=2, layout="packed", height=64)
    trace.save(tmp_path / "rank0.safetensors")
    back = Trace.load(tmp_path / "rank0.safetensors")
    assert back.side == "port" and [r.key for r in back] == [r.key for r in trace]
    for a, b in zip(trace, back, strict=True):
        assert torch.equal(a.value, b.value) and a.value.dtype == b.value.dtype
        assert (a.stage, a.layout, a.meta) == (b.stage, b.layout, b.meta)
