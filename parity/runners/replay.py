"""The fp64 referee's replay: a module's call again with its weights and inputs in float64."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

_TENSOR_TO = torch.Tensor.to


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


def replay_fp64(
    module: Any,
    args: tuple,
    kwargs: dict,
    parts: Sequence[Any] = (),
    whole: bool | None = None,
    keep: tuple[str, ...] = (),
) -> Any:
    """The module's output on the same call with its weights and inputs in float64.

    Cast in place and cast back (float64 holds every fp32/bf16 value exactly, so the round trip
    is lossless): a copy is not possible, SGLang modules hold process groups. `parts` (a DiT's
    blocks) are cast only while each one runs: a DiT at its real depth in float64 would not fit
    beside the two libraries' models (Flux's 12 B parameters are 96 GB in float64), one block does.
    Where the whole module fits in float64 (on the CPU, or in half the GPU's free memory) it is cast
    whole instead (`whole`: True / False decides it): some DiTs use a block's weights outside its
    forward (Helios projects the cross-attention keys and values of every block up front).
    `keep`: names of parameters left in their dtype, and then the libraries' float32 casts too
    (FamilyAdapter.replay_keeps_float32); otherwise those casts give float64 (`promoted_to_float64`).
    """
    parts = () if (_fits_whole(module) if whole is None else whole) else parts
    inside = {id(t) for part in parts for t in _tensors(part, keep)}
    rest = [t for t in _tensors(module, keep) if id(t) not in inside]
    device = next(iter(module.parameters()), torch.empty(0)).device.type
    with contextlib.ExitStack() as stack:
        for part in parts:
            stack.enter_context(_float64_while_running(part, keep))
        stack.enter_context(_float64(rest))
        # The library may run its DiT under autocast (SGLang can): float64 means no autocast.
        stack.enter_context(torch.autocast(device_type=device, enabled=False))
        if not keep:
            stack.enter_context(promoted_to_float64())
        with torch.no_grad():
            return module.forward(*to_double(args), **to_double(kwargs))


FLOAT32_ROUNDING = 2.0**-24  # float32's unit roundoff: the largest relative error of one rounding


def float32_rounding_moved(value: Any, seed: int = 0) -> Any:
    """Floating tensors in float64 (complex128), moved by one float32 rounding: each element times
    (1 +- 2^-24), signs from a seeded generator, through tuples, lists and dicts. Two libraries that
    round the same table (RoPE, a time embedding) to float32 at different points differ by about this;
    rounding the reference's own values would not show it where they are float32 values already."""
    if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
        generator = torch.Generator(device=value.device).manual_seed(seed)
        signs = torch.randint(0, 2, value.shape, generator=generator, device=value.device) * 2 - 1
        wide = _TENSOR_TO(value, torch.complex128 if value.is_complex() else torch.float64)
        return wide * (1 + FLOAT32_ROUNDING * _TENSOR_TO(signs, torch.float64))
    if isinstance(value, (tuple, list)):
        return type(value)(float32_rounding_moved(v, seed + i + 1) for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: float32_rounding_moved(v, seed + i + 1) for i, (k, v) in enumerate(value.items())}
    return value


def _fits_whole(module: Any) -> bool:
    tensors = [t for t in _tensors(module) if t.is_floating_point() or t.is_complex()]
    if not tensors or tensors[0].device.type != "cuda":
        return True
    extra = sum(t.numel() * (16 if t.is_complex() else 8) - t.numel() * t.element_size() for t in tensors)
    free, _ = torch.cuda.mem_get_info(tensors[0].device)
    return extra < free / 2


def _tensors(module: Any, keep: tuple[str, ...] = ()) -> list[torch.Tensor]:
    """The module's parameters and buffers, but those whose name ends with one of `keep`."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [t for name, t in named if not (keep and name.split(".")[-1] in keep)]


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
            t.data = _TENSOR_TO(t.data, dtype)  # not the promoted `to` a running replay installs


@contextlib.contextmanager
def _float64_while_running(part: Any, keep: tuple[str, ...] = ()) -> Iterator[None]:
    """`part`'s weights in float64 only from its forward's start to its end (forward hooks)."""
    held: list[contextlib.ExitStack] = []

    def before(module: Any, args: Any) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(_float64(_tensors(module, keep)))
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


# What the libraries hard-code below float64: casts, and factories given a dtype.
_LOWER = (torch.float32, torch.float16, torch.bfloat16)
_FACTORIES: tuple[str, ...] = ("arange", "linspace", "logspace", "zeros", "ones", "empty", "full", "tensor")
_FACTORIES += ("as_tensor", "zeros_like", "ones_like", "empty_like", "full_like")


def _promote(dtype: Any) -> Any:
    if dtype in _LOWER:
        return torch.float64
    return torch.complex128 if dtype == torch.complex64 else dtype


def _promoting(original: Any) -> Any:
    """`original` (a factory or Tensor.to) with every dtype it is given, by position or keyword, promoted."""

    def call(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_promote(a) if isinstance(a, torch.dtype) else a for a in args)
        if "dtype" in kwargs:
            kwargs["dtype"] = _promote(kwargs["dtype"])
        return original(*args, **kwargs)

    return call


def _as_double(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _TENSOR_TO(self, torch.float64)


@contextlib.contextmanager
def promoted_to_float64() -> Iterator[None]:
    """Within: every explicit cast to a lower float precision (`.float()`, `.half()`, `.to(torch.float32)`,
    `.type(torch.float32)`, a factory's `dtype=torch.float32`) gives float64 instead, and factories default
    to float64. Both libraries hard-code float32 in places (RoPE tables, sinusoidal time embeddings) and
    round at different points there: a float64 replay that kept those casts would differ by float32
    rounding, the size of what the audit looks for. Process-wide while it lasts (the pipelines wait in
    the hook that replays)."""
    methods = {"float": _as_double, "half": _as_double, "bfloat16": _as_double}
    methods |= {"to": _promoting(torch.Tensor.to), "type": _promoting(torch.Tensor.type)}
    saved_methods = {name: getattr(torch.Tensor, name) for name in methods}
    saved_factories = {name: getattr(torch, name) for name in _FACTORIES}
    default = torch.get_default_dtype()
    for name, method in methods.items():
        setattr(torch.Tensor, name, method)
    for name, factory in saved_factories.items():
        setattr(torch, name, _promoting(factory))
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        for name, method in saved_methods.items():
            setattr(torch.Tensor, name, method)
        for name, factory in saved_factories.items():
            setattr(torch, name, factory)
        torch.set_default_dtype(default)
