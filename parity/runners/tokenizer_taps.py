"""Tap a (transformers) tokenizer used by either pipeline: record input_ids and attention_mask."""

from __future__ import annotations

from typing import Any

import torch

from parity import stages
from parity.taps import Taps, argument
from parity.trace import Trace


def tap_tokenizer(taps: Taps, tokenizer: Any, index: int, trace: Trace, negative_prompt: str | None) -> None:
    """Record `input_ids.<index>` / `attention_mask.<index>` of the first call per prompt.

    Only the first call counts: Diffusers tokenizes a second time with padding="longest" just
    to warn about truncation, and that call does not feed the encoder.
    """
    seen: set[str] = set()

    def on_call(args: tuple, kwargs: dict, result: Any) -> None:
        text = argument(args, kwargs, 0, "text")
        text = text[0] if isinstance(text, (list, tuple)) and len(text) == 1 else text
        if not isinstance(text, str) or text in seen:
            return
        seen.add(text)
        prefix = "negative_" if negative_prompt is not None and text == negative_prompt else ""
        for field in ("input_ids", "attention_mask"):
            value = result.get(field) if hasattr(result, "get") else None
            if value is not None:
                value = torch.as_tensor(value)
                # Batch-first on both sides, whether the library asked for tensors or lists.
                value = value.unsqueeze(0) if value.ndim == 1 else value
                trace.add(f"{prefix}{field}.{index}", stages.TEXT_ENCODING, value)

    taps.hook_call(tokenizer, on_call)
