"""Pair reference and port records by canonical key, in one canonical layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from parity.trace import Key, Record, Trace

if TYPE_CHECKING:
    from parity.families.base import FamilyAdapter


@dataclass
class Pair:
    key: Key
    stage: str
    reference: torch.Tensor | None
    port: torch.Tensor | None


def align(reference: Trace, port: Trace, adapter: FamilyAdapter) -> list[Pair]:
    """One pair per key seen on either side: reference order first, then port-only keys.

    Each tensor is converted to the canonical layout by the family adapter, so e.g. Flux's packed
    latents and SGLang's 5-D image frames compare like for like with their reference.
    """

    def canonical(record: Record | None) -> torch.Tensor | None:
        return None if record is None else adapter.to_canonical(record)

    pairs: list[Pair] = []
    seen: set[Key] = set()
    for record in list(reference) + list(port):
        if record.key in seen:
            continue
        seen.add(record.key)
        ref, out = reference.get(record.key), port.get(record.key)
        stage = (ref or out or record).stage  # the last record's, as the tensor compared
        pairs.append(Pair(record.key, stage, canonical(ref), canonical(out)))
    return pairs
