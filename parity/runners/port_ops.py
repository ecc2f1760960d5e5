"""Native-ops mode for the port: every SGLang CustomOp runs its own `forward_native`, and every
fused kernel function that has a pure-torch twin in SGLang's `fallback_torch` runs that twin.

Why: SGLang dispatches each CustomOp once, at construction, by platform (`forward_cuda`,
`forward_cpu`, ...). On a CPU without libcuda several `forward_cpu` methods and the CPU binding
of `fuse_scale_shift_kernel` call `torch.ops.sgl_kernel.*` ops that do not exist, so Wan and
Qwen-Image cannot run there unless routed; on a GPU the same routing tells a kernel bug from a
logic bug (`--port-ops both`). Only the port's own code paths are swapped, never its math: the
native twins are SGLang's reference implementations of the same ops.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

MODES = ("kernels", "native")
_FALLBACK_MODULE = "sglang.kernels.ops.diffusion.common.fallback_torch"
_NATIVE_SUFFIX = "_native"
_KERNELS_PACKAGE = "sglang.kernels.ops.diffusion."


def default_mode(device: str) -> str:
    """What runs on this machine: SGLang's CPU kernels need sgl_kernel, which needs libcuda."""
    return "kernels" if device == "cuda" else "native"


def route_custom_ops(modules: Iterable[Any]) -> list[str]:
    """Point every CustomOp inside `modules` at its `forward_native`; one line per op class
    ("RMSNorm x12: forward_cpu -> forward_native"). Ops without a native implementation keep
    their dispatch and are listed as such."""
    from sglang.multimodal_gen.runtime.layers.custom_op import CustomOp

    routed: Counter[tuple[str, str]] = Counter()
    kept: Counter[str] = Counter()
    for root in modules:
        if not hasattr(root, "modules"):
            continue
        for op in root.modules():
            if not isinstance(op, CustomOp):
                continue
            name = type(op).__name__
            if op._defined_forward("forward_native") is None:
                kept[name] += 1
                continue
            before = getattr(op._forward_method, "__name__", "?")
            if before != "forward_native":
                op._forward_method = op.forward_native
                routed[(name, before)] += 1
    lines = [f"{name} x{n}: {before} -> forward_native" for (name, before), n in sorted(routed.items())]
    lines += [f"{name} x{n}: no forward_native, kept" for name, n in sorted(kept.items())]
    return lines


@contextmanager
def native_kernel_functions(enabled: bool = True) -> Iterator[list[str]]:
    """When enabled, within the block every loaded `sglang` module attribute that names a fused kernel with a
    `<name>_native` twin in `fallback_torch` is that twin; restored on exit."""
    import importlib

    if not enabled:
        yield []
        return
    fallback = importlib.import_module(_FALLBACK_MODULE)
    twins = {
        name[: -len(_NATIVE_SUFFIX)]: getattr(fallback, name)
        for name in dir(fallback)
        if name.endswith(_NATIVE_SUFFIX) and callable(getattr(fallback, name))
    }
    # The kernels themselves, as their own modules export them: only attributes bound to one of
    # these objects are swapped, never an unrelated function that happens to share a name.
    kernels: dict[int, str] = {}
    for module_name, module in list(sys.modules.items()):
        if module is not None and module_name.startswith(_KERNELS_PACKAGE) and module_name != _FALLBACK_MODULE:
            for kernel in twins:
                if callable(module.__dict__.get(kernel)):
                    kernels[id(module.__dict__[kernel])] = kernel
    patched: list[tuple[Any, str, Any]] = []
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("sglang."):
            continue
        for attribute, current in list(module.__dict__.items()):
            kernel = kernels.get(id(current))
            if kernel is not None and attribute == kernel:
                patched.append((module, attribute, current))
                setattr(module, attribute, twins[kernel])
    lines = sorted({f"{kernel} -> fallback_torch.{kernel}{_NATIVE_SUFFIX}" for _, kernel, _ in patched})
    try:
        yield lines
    finally:
        for module, kernel, original in reversed(patched):
            setattr(module, kernel, original)
