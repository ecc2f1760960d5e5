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

from parity.errors import ParityError

MODES = ("kernels", "native")
_FALLBACK_MODULE = "sglang.kernels.ops.diffusion.common.fallback_torch"
_NATIVE_SUFFIX = "_native"
_KERNELS_PACKAGE = "sglang.kernels.ops.diffusion."


def default_mode(device: str) -> str:
    """What runs on this machine: SGLang's CPU kernels need sgl_kernel, which needs libcuda; on a
    GPU its kernels need the real sgl_kernel, not a stand-in (the device kit carries a stub)."""
    return "kernels" if device == "cuda" and kernels_available() else "native"


def kernels_available() -> bool:
    try:
        import sgl_kernel
    except Exception:  # sgl_kernel raises OSError, ImportError, ... where it cannot load
        return False
    return getattr(sgl_kernel, "__version__", "0.0.0") != "0.0.0"  # the device kit's stub says 0.0.0


def check_mode_runs(mode: str) -> None:
    """A kernels-mode run on a machine whose sgl_kernel is a stub would feed placeholders into the
    math: refuse it (exit 2) rather than report numbers from a path that never ran."""
    import torch

    if mode == "kernels" and torch.cuda.is_available() and not kernels_available():
        raise ParityError(
            "--port-ops kernels: sgl_kernel is missing or a stub on this machine, so SGLang's fused "
            "CUDA kernels cannot run; use --port-ops native"
        )


@contextmanager
def native_custom_ops(enabled: bool = True) -> Iterator[None]:
    """When enabled, every CustomOp built or run within the block dispatches to its own
    `forward_native` (ops without one keep the platform's choice). Patched at the dispatch, not
    per instance, so components SGLang loads lazily during the request are routed too."""
    if not enabled:
        yield
        return
    from sglang.multimodal_gen.runtime.layers.custom_op import CustomOp

    platform_dispatch = CustomOp.dispatch_forward

    def dispatch_native(op: Any) -> Any:
        native = op._defined_forward("forward_native")
        return native if native is not None else platform_dispatch(op)

    CustomOp.dispatch_forward = dispatch_native
    try:
        with _native_fused_ops():
            yield
    finally:
        CustomOp.dispatch_forward = platform_dispatch


# SGLang's LLM layers (sglang.srt, used by its Qwen2.5-VL text encoder) decide at construction, from
# module-level platform flags, which fused kernel an op will call. RotaryEmbedding on a host that is
# neither CUDA nor SGLang's CPU engine (SGLANG_USE_CPU_ENGINE unset) binds `vllm._custom_ops`, which
# is not installed: its construction fails and SGLang silently loads transformers' encoder instead.
# In native mode these modules see the platform as CPU (no kernel is bound; the op runs its
# forward_native, forced below), for ops built within the block.
_CPU_PLATFORM_FLAGS = (("sglang.srt.layers.rotary_embedding.base", "_is_cpu"),)


@contextmanager
def _native_fused_ops() -> Iterator[None]:
    """SGLang's unified ops (sglang.kernels BaseFusedOp: the srt RMSNorm, RotaryEmbedding, ...) run
    their `forward_native` (SGLang's global forced backend, TORCH = forward_native; an op without
    one keeps its normal dispatch), and the flags in `_CPU_PLATFORM_FLAGS` read CPU; restored on exit."""
    import importlib

    from sglang.kernels import fused_op
    from sglang.kernels.spec import KernelBackend

    saved_flags = []
    for module_name, flag in _CPU_PLATFORM_FLAGS:
        module = importlib.import_module(module_name)
        saved_flags.append((module, flag, getattr(module, flag)))
        setattr(module, flag, True)
    forced = fused_op.get_fused_op_backend()
    fused_op.set_fused_op_backend(KernelBackend.TORCH)
    try:
        yield
    finally:
        fused_op.set_fused_op_backend(forced)
        for module, flag, value in saved_flags:
            setattr(module, flag, value)


def describe_custom_ops(modules: Iterable[Any]) -> list[str]:
    """One line per CustomOp class inside `modules` whose forward is not what the platform would
    pick, e.g. "RMSNorm x17: forward_cpu -> forward_native"; and each op left on its platform
    path because it has no native implementation."""
    from sglang.multimodal_gen.runtime.layers.custom_op import CustomOp

    routed: Counter[tuple[str, str, str]] = Counter()
    for root in modules:
        if not hasattr(root, "modules"):
            continue
        for op in root.modules():
            if isinstance(op, CustomOp):
                now = getattr(op._forward_method, "__name__", "?")
                platform = getattr(CustomOp.dispatch_forward(op), "__name__", "?")
                routed[(type(op).__name__, platform, now)] += 1
    lines = [
        f"{name} x{n}: {platform} -> {now}" if platform != now else f"{name} x{n}: {now} (no forward_native, kept)"
        for (name, platform, now), n in sorted(routed.items())
        if platform != now or now != "forward_native"
    ]
    return lines + _describe_fused_ops(modules)


def _describe_fused_ops(modules: Iterable[Any]) -> list[str]:
    """One line per sglang.kernels BaseFusedOp class inside `modules` (forced onto forward_native),
    and one per platform flag of `_CPU_PLATFORM_FLAGS` that an op built here was constructed under."""
    from sglang.kernels.fused_op import BaseFusedOp

    found: Counter[tuple[str, str, bool]] = Counter()
    for root in modules:
        if not hasattr(root, "modules"):
            continue
        for op in root.modules():
            if isinstance(op, BaseFusedOp):
                native = "forward_native" in type(op).__dict__ or any(
                    "forward_native" in vars(base) for base in type(op).__mro__[1:] if base is not BaseFusedOp
                )
                found[(type(op).__name__, type(op).__module__, native)] += 1
    lines = [
        f"{name} x{n} (sglang.kernels op): -> forward_native (forced backend)"
        if native
        else f"{name} x{n} (sglang.kernels op): no forward_native, normal dispatch kept"
        for (name, _, native), n in sorted(found.items())
    ]
    packages = {module.rsplit(".", 1)[0] for _, module, _ in found}
    for module_name, flag in _CPU_PLATFORM_FLAGS:
        if module_name.rsplit(".", 1)[0] in packages:
            lines.append(
                f"{module_name}.{flag} = True at construction (platform seen as CPU: no vllm/sgl_kernel op bound)"
            )
    return lines


class _KernelBindings:
    """(module, attribute, native twin) for every loaded `sglang` module attribute bound to a fused
    kernel that has a `<name>_native` twin in `fallback_torch`. A full scan of sys.modules costs
    about 50 ms, so each call scans only the modules imported since the last one."""

    def __init__(self) -> None:
        self.scanned: set[str] = set()
        self.twins: dict[str, Any] | None = None  # kernel name -> its native twin
        self.kernels: dict[int, tuple[str, Any]] = {}  # id(kernel) -> (name, twin)
        self.found: list[tuple[Any, str, Any]] = []

    def __call__(self, fallback: Any) -> list[tuple[Any, str, Any]]:
        if self.twins is None:
            self.twins = {
                name[: -len(_NATIVE_SUFFIX)]: getattr(fallback, name)
                for name in dir(fallback)
                if name.endswith(_NATIVE_SUFFIX) and callable(getattr(fallback, name))
            }
        new = sys.modules.keys() - self.scanned  # a set difference: ~8000 names, well under a millisecond
        # The kernels themselves, as their own modules export them: only attributes bound to one of
        # these objects are swapped, never an unrelated function that happens to share a name.
        known = len(self.kernels)
        for module_name in new:
            module = sys.modules.get(module_name)
            if module is not None and module_name.startswith(_KERNELS_PACKAGE) and module_name != _FALLBACK_MODULE:
                for kernel, twin in self.twins.items():
                    if callable(module.__dict__.get(kernel)):
                        self.kernels[id(module.__dict__[kernel])] = (kernel, twin)
        if len(self.kernels) != known:  # a kernel module arrived: modules scanned before may bind it
            self.scanned, self.found, new = set(), [], set(sys.modules.keys())
        for module_name in new:
            self.scanned.add(module_name)
            module = sys.modules.get(module_name)
            if module is None or not module_name.startswith("sglang."):
                continue
            for attribute, current in list(module.__dict__.items()):
                bound = self.kernels.get(id(current))
                if bound is not None and attribute == bound[0]:
                    self.found.append((module, attribute, bound[1]))
        return self.found


_kernel_bindings = _KernelBindings()


@contextmanager
def native_kernel_functions(enabled: bool = True) -> Iterator[list[str]]:
    """When enabled, within the block every loaded `sglang` module attribute that names a fused kernel with a
    `<name>_native` twin in `fallback_torch` is that twin; restored on exit."""
    import importlib

    if not enabled:
        yield []
        return
    targets = _kernel_bindings(importlib.import_module(_FALLBACK_MODULE))
    patched: list[tuple[Any, str, Any]] = []
    for module, attribute, twin in targets:
        current = module.__dict__.get(attribute)
        if current is not twin:
            patched.append((module, attribute, current))
            setattr(module, attribute, twin)
    lines = sorted({f"{kernel} -> fallback_torch.{kernel}{_NATIVE_SUFFIX}" for _, kernel, _ in patched})
    try:
        yield lines
    finally:
        for module, kernel, original in reversed(patched):
            setattr(module, kernel, original)
