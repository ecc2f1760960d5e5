"""The fp64 referee's replay: a module's call again with its weights and inputs in float64."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def to_double(value: Any) -> Any:
    """Floating tensors to float64 (complex to complex128), through tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            return value.to(torch.complex128)
        return value.double() if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(to_double(v) for v in value)
    if isinstance(value, dict):
        return {k: to_double(v) for k, v in value.items()}
    return value


def replay_fp64(module: Any, args: tuple, kwargs: dict, parts: Sequence[Any] = ()) -> Any:
    """The module's output on the same call with its weights and inputs in float64.

    Cast in place and cast back (float64 holds every fp32/bf16 value exactly, so the round trip
    is lossless): a copy is not possible, SGLang modules hold process groups. `parts` (a DiT's
    blocks) are cast only while each one runs: a DiT at its real depth in float64 would not fit
    beside the two libraries' models (Flux's 12 B parameters are 96 GB in float64), one block does.
    """
    inside = {id(t) for part in parts for t in _tensors(part)}
    rest = [t for t in _tensors(module) if id(t) not in inside]
    device = next(iter(module.parameters()), torch.empty(0)).device.type
    with contextlib.ExitStack() as stack:
        for part in parts:
            stack.enter_context(_float64_while_running(part))
        stack.enter_context(_float64(rest))
        # The library may run its DiT under autocast (SGLang can): float64 means no autocast.
        stack.enter_context(torch.autocast(device_type=device, enabled=False))
        with torch.no_grad():
            return module.forward(*to_double(args), **to_double(kwargs))


def _tensors(module: Any) -> list[torch.Tensor]:
    return list(module.parameters()) + list(module.buffers())


@contextlib.contextmanager
def _float64(tensors: list[torch.Tensor]) -> Iterator[None]:
    """The floating tensors' data in float64 (complex128) within the block, as they were after it."""
    dtypes = [t.dtype for t in tensors]
    for t in tensors:
        t.data = to_double(t.data)
    try:
        yield
    finally:
        for t, dtype in zip(tensors, dtypes, strict=True):
            t.data = t.data.to(dtype)


@contextlib.contextmanager
def _float64_while_running(part: Any) -> Iterator[None]:
    """`part`'s weights in float64 only from its forward's start to its end (forward hooks)."""
    held: list[contextlib.ExitStack] = []

    def before(module: Any, args: Any) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(_float64(_tensors(module)))
        held.append(stack)

    def after(module: Any, args: Any, output: Any) -> None:
        held.pop().close()

    handles = [part.register_forward_pre_hook(before), part.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        while held:  # the forward raised: its block is cast back all the same
            held.pop().close()
