"""Isolated (teacher-forced) mode: the reference's recorded values, handed to the port."""

from __future__ import annotations

from typing import Any

import torch

from parity.trace import Key, Trace


class Teacher:
    """The reference's recorded values, handed to the port in isolated (teacher-forced) mode so
    that every port component is judged on the reference's inputs, free of upstream drift."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace

    def get(self, tensor: str, step: int | None = None, block: str | None = None, like: Any = None) -> Any:
        """The reference value, on `like`'s device and dtype; None when absent or shaped differently."""
        record = self.trace.get(Key(tensor, step, block))
        if record is None:
            return None
        value = record.value
        if isinstance(like, torch.Tensor):
            if tuple(value.shape) != tuple(like.shape):
                if [n for n in value.shape if n != 1] != [n for n in like.shape if n != 1]:
                    return None
                value = value.reshape(like.shape)  # only singleton axes differ (a one-frame axis): same order
            value = value.to(device=like.device, dtype=like.dtype)
        return value
