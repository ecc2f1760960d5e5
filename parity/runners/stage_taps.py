"""The taps both runners put on the text and decode ends of a pipeline: tokenizers (transformers
objects on both sides) and the VAE decode; with a teacher (isolated mode) they feed the reference's
values in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from parity import stages
from parity.families.base import FamilyAdapter
from parity.runners.teacher import Teacher
from parity.taps import Taps, argument, replace_argument
from parity.trace import Trace


def tap_tokenizer(
    taps: Taps,
    tokenizer: Any,
    index: int,
    trace: Trace,
    prompt: str,
    teacher: Teacher | None = None,
    adapter: FamilyAdapter | None = None,
) -> None:
    """Record `input_ids.<index>` / `attention_mask.<index>` of the first call per text; with a
    teacher, the encoder then receives the reference's ids and mask.

    Only the first call per text counts: Diffusers tokenizes a second time with padding="longest"
    just to warn about truncation, and that call does not feed the encoder. Any text other than
    the prompt (or a text the adapter's `prompt_texts` derives from it) is the negative prompt (the
    case's, or a library default when the case sets none), recorded as `negative_...`, so it can
    never overwrite the prompt's ids. With the adapter's `unpadded_tokens`, only the tokens the
    attention mask keeps are recorded.
    """
    seen: set[str] = set()
    prompts = adapter.prompt_texts(prompt) if adapter is not None else {prompt}
    unpadded = adapter is not None and adapter.unpadded_tokens

    def on_call(args: tuple, kwargs: dict, result: Any) -> Any:
        text = argument(args, kwargs, 0, "text")
        text = text[0] if isinstance(text, (list, tuple)) and len(text) == 1 else text
        if not isinstance(text, str) or text in seen:
            return None
        seen.add(text)
        prefix = "" if text in prompts else "negative_"
        mask = result.get("attention_mask") if unpadded and hasattr(result, "get") else None
        for field in ("input_ids", "attention_mask"):
            value = result.get(field) if hasattr(result, "get") else None
            if value is None:
                continue
            tensor = torch.as_tensor(value)
            # Batch-first on both sides, whether the library asked for tensors or lists.
            tensor = tensor.unsqueeze(0) if tensor.ndim == 1 else tensor
            if mask is not None and tensor.shape[0] == 1:
                tensor = tensor[:, torch.as_tensor(mask).reshape(-1).bool()]
            name = f"{prefix}{field}.{index}"
            trace.add(name, stages.TEXT_ENCODING, tensor)
            if teacher is not None and isinstance(value, torch.Tensor):
                reference = teacher.get(name, like=value)
                if reference is not None:
                    result[field] = reference
        return None

    taps.hook_call(tokenizer, on_call)


def text_encoders(components: Mapping[str, Any]) -> list[Any]:
    """A pipeline's text encoders in order: its components named `text_encoder*` (by name), loaded ones."""
    return [m for name, m in sorted(components.items()) if name.startswith("text_encoder") and m is not None]


def tap_encoder_inputs(taps: Taps, encoder: Any, index: int, trace: Trace, teacher: Teacher | None = None) -> None:
    """Record `input_ids.<index>` / `attention_mask.<index>` as text encoder `index` receives them (the
    adapter's `encoder_input_ids`): the first call is the prompt's, the second the negative prompt's
    (`negative_...`; both libraries encode the prompt first), later calls are not recorded. With a teacher,
    the encoder then receives the reference's ids and mask."""
    calls = 0

    def before(args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        nonlocal calls
        calls += 1
        if calls > 2:
            return None
        prefix = "" if calls == 1 else "negative_"
        for position, field in enumerate(("input_ids", "attention_mask")):
            value = args[position] if len(args) > position else kwargs.get(field)
            if not isinstance(value, torch.Tensor):
                continue
            name = f"{prefix}{field}.{index}"
            trace.add(name, stages.TEXT_ENCODING, value)
            reference = teacher.get(name, like=value) if teacher is not None else None
            args, kwargs = replace_argument(args, kwargs, position, field, reference)
        return args, kwargs

    taps.forward_pre_hook(encoder, before)


def tap_vae_decode(taps: Taps, vae: Any, trace: Trace, teacher: Teacher | None = None) -> None:
    """Record what goes into `vae.decode(z)` as `vae_input`; with a teacher, decode the reference's."""

    def before(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        z = argument(args, kwargs, 0, "z")
        trace.add("vae_input", stages.DECODING, z)
        reference = teacher.get("vae_input", like=z) if teacher else None
        return replace_argument(args, kwargs, 0, "z", reference)

    taps.wrap_method(vae, "decode", lambda args, kwargs, result: None, before=before)
