"""Taps both runners share: tokenizers (transformers objects on both sides) and the denoising loop."""

from __future__ import annotations

from typing import Any

import torch

from parity import stages
from parity.cases import Case
from parity.taps import Taps, argument, first_tensor
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


class DenoisingRecorder:
    """Names what the denoising loop produces, per step, the same way on both sides.

    The DiT's outputs of one step are `noise_pred`, or with CFG `noise_pred_cond` then
    `noise_pred_uncond` (both libraries run the conditional branch first); the scheduler step's
    output is `latents` and ends the step.
    """

    def __init__(self, trace: Trace, case: Case, layout: str) -> None:
        self.trace = trace
        self.cfg = case.cfg_enabled
        self.layout = layout
        self.size = {"height": case.height, "width": case.width}
        self.step = 0
        self.calls_this_step = 0

    def _add(self, name: str, value: Any) -> None:
        self.trace.add(name, stages.DENOISING, value, step=self.step, layout=self.layout, **self.size)

    def on_dit(self, args: tuple, kwargs: dict, output: Any) -> None:
        if self.cfg:
            name = ("noise_pred_cond", "noise_pred_uncond")[min(self.calls_this_step, 1)]
        else:
            name = "noise_pred"
        self.calls_this_step += 1
        self._add(name, first_tensor(output))

    def on_scheduler_step(self, args: tuple, kwargs: dict, result: Any) -> None:
        self._add("latents", first_tensor(result))
        self.step += 1
        self.calls_this_step = 0


def on_vae_decode(trace: Trace):
    """A tap for `vae.decode(z)`: records its input as `vae_input`."""

    def on_call(args: tuple, kwargs: dict, result: Any) -> None:
        trace.add("vae_input", stages.DECODING, argument(args, kwargs, 0, "z"))

    return on_call
