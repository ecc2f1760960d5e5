"""The traces of a multi-rank port, merged into one trace as a one-rank port would have recorded it.

Each rank records with the same taps as a one-rank run and no collective inside a hook, so ranks
may record different sets (a CFG-parallel rank runs one branch). Per key, in rank 0's order:

- a record every rank holds whole (text embeddings, the schedule, a tensor-parallel block's output
  after its all-reduce, decoded frames) is taken from the lowest rank that has it, and every other
  rank's copy is held to it: the pair goes to the rank-agreement comparison, a check of its own;
- a sequence-parallel shard (the family adapter says which records may be shards and along which
  dimension; parity.families.base.SequenceShards) is concatenated in SP-rank order and trimmed of
  the padding SGLang puts at the end of the last shard, to the length the one-rank run has. A record
  in the shards' scope is a shard when its length along that dimension differs from the one-rank
  run's; if the one-rank run has no such record, when the ranks of one SP group differ.

Pure torch: no library is imported, so the merge is tested on synthetic traces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from parity.align import Pair
from parity.trace import Key, Record, Trace

Tags = Mapping[str, int]  # a rank's place: rank, tp, sp, cfg (and ulysses, ring)


@dataclass(frozen=True)
class RankTrace:
    tags: Tags
    trace: Trace


@dataclass(frozen=True)
class Merged:
    trace: Trace
    agreement: list[Pair]  # per whole key: the lowest rank's value against the rank that differs most
    sharded: list[Key]  # keys put together from sequence shards


def merge(
    ranks: list[RankTrace],
    is_shard_scope: Callable[[Record], bool],
    dim: int,
    one_rank_length: Callable[[Key], int | None],
) -> Merged:
    """One trace from every rank's (see the module docstring). `is_shard_scope`: may this record be
    a sequence shard (the adapter's declaration); `one_rank_length`: the length along `dim` of the
    same key in the one-rank run (None if it has none)."""
    ordered = sorted(ranks, key=lambda r: r.tags["rank"])
    merged = Trace(ordered[0].trace.side, ordered[0].trace.device)
    agreement: list[Pair] = []
    sharded: list[Key] = []
    for key in _keys(ordered):
        holders = [(r.tags, record) for r in ordered if (record := r.trace.get(key)) is not None]
        first = holders[0][1]
        groups = _by_sp_rank(holders)
        if len(groups) > 1 and is_shard_scope(first) and _is_shard(groups, dim, one_rank_length(key)):
            value = _join(groups, dim, one_rank_length(key))
            sharded.append(key)
            # TP / CFG ranks of one SP rank hold copies of its shard
            worst = _worst([(groups[t.get("sp", 0)], r) for t, r in holders if r is not groups[t.get("sp", 0)]])
        else:
            value = first.value
            worst = _worst([(first, rec) for _, rec in holders[1:]])
        merged.extend([Record(key, first.stage, value, first.layout, dict(first.meta))])
        if worst is not None:
            agreement.append(Pair(key, first.stage, worst[0].value, worst[1].value))
    return Merged(merged, agreement, sharded)


def _keys(ranks: list[RankTrace]) -> list[Key]:
    """Every key, in the lowest rank's order, then keys only later ranks have (in their order)."""
    seen: dict[Key, None] = {}
    for rank in ranks:
        for record in rank.trace:
            seen.setdefault(record.key)
    return list(seen)


def _by_sp_rank(holders: list[tuple[Tags, Record]]) -> dict[int, Record]:
    """One record per SP rank: the lowest rank's of each (other TP / CFG ranks hold copies)."""
    groups: dict[int, Record] = {}
    for tags, record in holders:
        groups.setdefault(tags.get("sp", 0), record)
    return dict(sorted(groups.items()))


def _is_shard(groups: dict[int, Record], dim: int, length: int | None) -> bool:
    values = [r.value for r in groups.values()]
    if any(v.ndim <= dim for v in values) or len({v.shape for v in values}) != 1:
        return False
    if length is not None:
        return values[0].shape[dim] != length
    return any(not torch.equal(values[0], v) for v in values[1:])


def _join(groups: dict[int, Record], dim: int, length: int | None) -> torch.Tensor:
    joined = torch.cat([r.value for r in groups.values()], dim=dim)
    if length is not None and joined.shape[dim] > length:
        joined = joined.narrow(dim, 0, length)  # SGLang pads the last shard at its end
    return joined


def _worst(pairs: list[tuple[Record, Record]]) -> tuple[Record, Record] | None:
    """The pair whose two values differ most (shape differences first), or None if there are none."""

    def distance(pair: tuple[Record, Record]) -> float:
        a, b = pair[0].value, pair[1].value
        if a.shape != b.shape:
            return float("inf")
        if torch.equal(a, b):
            return -1.0
        difference = (a.double() - b.double()).abs().nan_to_num(nan=float("inf"))
        return float(difference.max())

    return max(pairs, key=distance) if pairs else None
