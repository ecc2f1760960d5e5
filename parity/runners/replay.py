"""The fp64 referee's replay: a module's call again with its weights and inputs in float64."""

from __future__ import annotations

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


def replay_fp64(module: Any, args: tuple, kwargs: dict) -> Any:
    """The module's output on the same call with its weights and inputs in float64.

    Cast in place and cast back (float64 holds every fp32/bf16 value exactly, so the round trip
    is lossless): a copy is not possible, SGLang modules hold process groups.
    """
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    dtypes = {name: t.dtype for name, t in tensors}
    module.double()
    device = next(iter(dtypes and module.parameters()), torch.empty(0)).device.type
    try:
        # The library may run its DiT under autocast (SGLang can): float64 means no autocast.
        with torch.no_grad(), torch.autocast(device_type=device, enabled=False):
            return module.forward(*to_double(args), **to_double(kwargs))
    finally:
        for name, t in tensors:
            t.data = t.data.to(dtypes[name])
