"""An ordered list of named tensors recorded from one pipeline run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from parity import stages


@dataclass(frozen=True)
class Key:
    """Identifies one tensor of a run: the same key on both sides means 'compare these'."""

    tensor: str
    step: int | None = None
    block: str | None = None

    def label(self) -> str:
        parts = [self.tensor]
        if self.step is not None:
            parts.append(f"step={self.step}")
        if self.block is not None:
            parts.append(f"block={self.block}")
        return " ".join(parts)


@dataclass
class Record:
    """One recorded tensor.

    `layout` names the layout the library produced it in ("canonical" unless a family adapter
    must convert it, e.g. Flux's "packed" latents); `meta` carries what the conversion needs.
    """

    key: Key
    stage: str
    value: torch.Tensor
    layout: str = "canonical"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in stages.ORDER:
            raise ValueError(f"unknown stage {self.stage!r}; expected one of {stages.ORDER}")


def stack_samples(value: Any) -> Any:
    """A per-sample list of tensors (Z-Image's DiT takes and returns one tensor per sample, its
    pipeline one embedding per prompt) as one batch: stacked on a new first axis. Anything else as is."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return torch.stack(list(value))
    return value


class Trace:
    """Records of one side ("reference" or "port"), in the order they were produced."""

    def __init__(self, side: str, device: str = "cpu") -> None:
        """`device`: where records are kept. A GPU run keeps its records on the GPU (a clone costs
        no synchronisation and no host memory); they are compared there too."""
        self.side = side
        self.device = device
        self._records: list[Record] = []
        self._last: dict[Key, Record] = {}  # `get` in O(1): aligning a few hundred records pairs each one

    def add(
        self,
        tensor: str,
        stage: str,
        value: Any,
        *,
        step: int | None = None,
        block: str | None = None,
        layout: str = "canonical",
        **meta: Any,
    ) -> Record:
        """Record a detached copy of `value` (a tensor, or anything torch.as_tensor takes) on the
        trace's device."""
        value = stack_samples(value)
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value)
        # A host tensor (token ids, a library's CPU timesteps) goes to a GPU trace without blocking:
        # a blocking copy would wait for the GPU to drain in the middle of the run.
        copy = value.detach().to(self.device, copy=True, non_blocking=self.device != "cpu")
        record = Record(Key(tensor, step, block), stage, copy, layout, meta)
        self._append(record)
        return record

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self._append(record)

    def _append(self, record: Record) -> None:
        self._records.append(record)
        self._last[record.key] = record

    def move_to(self, device: str) -> None:
        """Every record's tensor to `device`, in place (records kept on a GPU, moved off it)."""
        for record in self._records:
            record.value = record.value.to(device)
        self.device = device

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: Key) -> Record | None:
        """The last record with this key (a stage that runs twice overwrites the first)."""
        return self._last.get(key)

    def save(self, path: Path) -> None:
        """The records as `path` (.safetensors, the tensors) beside `path`.json (keys, stages, layouts,
        meta, in order): how a rank process hands its trace to the parent, with nothing pickled."""
        from safetensors.torch import save_file

        tensors = {f"r{i}": r.value.detach().cpu().contiguous() for i, r in enumerate(self._records)}
        index = [
            {
                "tensor": r.key.tensor,
                "step": r.key.step,
                "block": r.key.block,
                "stage": r.stage,
                "layout": r.layout,
                "meta": r.meta,
            }
            for r in self._records
        ]
        save_file(tensors, str(path))
        path.with_suffix(".index.json").write_text(json.dumps({"side": self.side, "records": index}))

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> Trace:
        """A trace written by `save`, its tensors on `device`."""
        from safetensors.torch import load_file

        tensors = load_file(str(path), device=device)
        index = json.loads(path.with_suffix(".index.json").read_text())
        trace = cls(index["side"], device)
        for i, entry in enumerate(index["records"]):
            key = Key(entry["tensor"], entry["step"], entry["block"])
            trace._append(Record(key, entry["stage"], tensors[f"r{i}"], entry["layout"], entry["meta"]))
        return trace
