"""Native-ops mode for the port: no SGLang kernel runs. Every SGLang CustomOp runs its own
`forward_native`; every fused kernel function SGLang's model code calls runs a pure-torch twin (SGLang's
`fallback_torch` one, else parity's, parity.runners.native_twins) or, where its own answer "None: not
applicable" sends the caller down SGLang's eager path, answers None; SGLang's bit-exact and
request-gated fast paths are off. A census counts every SGLang kernel that still runs (the report says
"native" or "native except: ...").

Why: SGLang dispatches each CustomOp once, at construction, by platform (`forward_cuda`,
`forward_cpu`, ...). On a CPU without libcuda several `forward_cpu` methods and the CPU binding
of `fuse_scale_shift_kernel` call `torch.ops.sgl_kernel.*` ops that do not exist, so Wan and
Qwen-Image cannot run there unless routed; on a GPU the same routing tells a kernel bug from a
logic bug (`--port-ops both`). Only the port's own code paths are swapped, never its math: the
twins compute what the kernels compute (SGLang's reference implementations, or parity's, written from
each kernel's source and checked against it on a GPU: tests/test_native_twins_gpu.py).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from parity.errors import ParityError

MODES = ("kernels", "native")
_FALLBACK_MODULE = "sglang.kernels.ops.diffusion.common.fallback_torch"
_NATIVE_SUFFIX = "_native"
_KERNELS_PACKAGE = "sglang.kernels.ops.diffusion."


def default_mode(device: str) -> str:
    """What runs on this machine: SGLang's CPU kernels need sgl_kernel, which needs libcuda; on a
    GPU its kernels need the real sgl_kernel, not a stand-in (a placeholder package some images carry)."""
    return "kernels" if device == "cuda" and kernels_available() else "native"


def kernels_available() -> bool:
    try:
        import sgl_kernel
    except Exception:  # sgl_kernel raises OSError, ImportError, ... where it cannot load
        return False
    return getattr(sgl_kernel, "__version__", "0.0.0") != "0.0.0"  # a placeholder package says 0.0.0


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


# --- Kernel functions: what no CustomOp dispatch reaches -------------------------------------------
# Outside its CustomOps, SGLang's model code calls fused kernels itself: functions of sglang.kernels
# imported into the model modules (`residual_gate_add`, `timestep_embedding`, the qk-norm + RoPE
# kernel, ...), a FlashInfer op, and fast paths behind a BitExactFusionGate (checked once against
# SGLang's eager chain) or a QualityGatedFusion site (mounted per request). Native mode routes what it
# knows: a kernel with a torch twin runs the twin (SGLang's fallback_torch one, else parity's,
# parity.runners.native_twins); a kernel whose own answer "None: not applicable" sends its caller down
# SGLang's eager path answers None; every BitExactFusionGate is disabled and every QualityGatedFusion
# site off, so those fast paths run the eager chain they are checked against. While the port runs, a
# census counts every SGLang kernel that still runs (KernelCensus): calls of the other kernel functions
# from SGLang's model code, Triton launches, JIT (tvm-ffi) kernel calls and torch.ops.sgl_kernel ops.

# Where kernel functions live, and the kernel libraries SGLang calls into directly.
_KERNEL_PACKAGES = (
    "sglang.kernels.ops.",
    "sglang.kernels.kda_kernels.",
    "sglang.kernels.cake_kernels.",
    "sglang.kernels.plugin_kernels.",
)
_KERNEL_LIBRARIES = ("sgl_kernel", "sgl_kernel_npu", "flashinfer", "aiter", "vllm", "flash_attn", "deep_gemm")
# Inside those packages, modules that hold no kernel (platform plumbing, the fallbacks, the site policy),
# and functions that launch nothing: predicates, helpers, loaders.
_NOT_KERNEL_MODULES = (
    _KERNELS_PACKAGE + "common.",
    _KERNELS_PACKAGE + "sites.bitexact_gate",
    _KERNELS_PACKAGE + "sites.quality_gate",
)
_HELPER_PREFIXES = ("can_", "is_", "has_", "should_", "supports_", "get_", "check_", "load_", "_")
_HELPER_SUFFIXES = ("_supported", "_capability", "_capabilities")
_HELPERS = frozenset(
    {
        "tensors_equal",
        "flashinfer_rmsnorm_diagnostic_hint",
        "expand_scale_shift_cpu_param",  # reshapes a CPU op's scale/shift parameter
        "rmsnorm_interleaved_rope_block_cols",  # a column count
    }
)
_FACADE = "sglang.kernels.ops.diffusion"  # its PEP 562 __getattr__ resolves kernels lazily
# A native run's request asks for SGLang's "exact" quality level: the reference path, with none of the
# fast paths a request mounts ("lossless": the DiT's fusion sites, the VAE decoder's fast paths, ...).
NATIVE_REQUEST = {"quality": "exact"}
_JIT_LOADER = "sglang.kernels.jit.utils.compile.loader"
_DECLINED = "declined (None: the caller runs SGLang's eager path)"


@dataclass(frozen=True)
class _Route:
    """What native mode does with one kernel function: run `impl` ("twin": parity's, "fallback":
    SGLang's fallback_torch one), answer None ("declined"), or call it and count it ("count")."""

    kind: str
    name: str
    impl: Callable[..., Any] | None = None
    target: str = ""


def kernel_name(obj: Any, export: str | None = None) -> str | None:
    """The name a kernel is reported under, or None for anything that launches no kernel. `export`:
    the public name a kernel module binds `obj` to (SGLang picks a platform's implementation under it:
    on a CPU `fuse_scale_shift_kernel` is `_fuse_scale_shift_kernel_cpu`); else the function's own
    name, for a function of sglang.kernels (`residual_gate_add`) or of a kernel library
    (`flashinfer.<op>`)."""
    found = _identity(obj, export)
    return found[1] if found is not None else None


def _identity(obj: Any, export: str | None) -> tuple[str, str] | None:
    """(module, name) of a kernel, read without touching any attribute `obj` might make up (SGLang
    binds lazy-import proxies whose attribute lookups import half the world)."""
    function = inspect.isfunction(obj) or inspect.isbuiltin(obj)
    if not function and (export is None or isinstance(obj, type) or not callable(obj)):
        return None
    module, name = (obj.__module__, export or obj.__name__) if function else (type(obj).__module__, export)
    if not isinstance(module, str) or not isinstance(name, str) or name.startswith(_HELPER_PREFIXES):
        return None
    if name in _HELPERS or name.endswith(_HELPER_SUFFIXES):
        return None
    if export is not None:
        return (module, name) if module.startswith(_KERNEL_PACKAGES) else None
    if module.startswith(_KERNEL_PACKAGES):
        return None if module.startswith(_NOT_KERNEL_MODULES) else (module, name)
    library = module.split(".")[0]
    return (module, f"{library}.{name}") if library in _KERNEL_LIBRARIES else None


def _route_for(obj: Any, fallback: Any, export: str | None = None) -> _Route | None:
    found = _identity(obj, export)
    if found is None:
        return None
    from parity.runners import native_twins

    module, name = found
    key = f"{module}.{name}"
    twin = native_twins.TWINS.get(key)
    if twin is not None:
        return _Route("twin", name, twin, f"parity native_twins.{twin.__name__}")
    native = getattr(fallback, name + _NATIVE_SUFFIX, None) if module.startswith(_KERNELS_PACKAGE) else None
    if callable(native):
        return _Route("fallback", name, native, f"fallback_torch.{name}{_NATIVE_SUFFIX}")
    if key in native_twins.DECLINED or (name.startswith("try_") and module.startswith(_KERNEL_PACKAGES)):
        return _Route("declined", name, None, _DECLINED)
    return _Route("count", name)


@dataclass
class KernelCensus:
    """What ran while a native-mode port ran: `ran`, each SGLang kernel (function, Triton launch, JIT
    call or sgl_kernel op) by name and count; `routed`, the calls each reroute took."""

    ran: Counter[str] = field(default_factory=Counter)
    routed: Counter[str] = field(default_factory=Counter)


_census: KernelCensus | None = None  # the census of the native block in progress
_replacements: dict[tuple[int, str, str], tuple[Any, Any]] = {}  # (id(original), kind, target) -> both
_originals: dict[int, Any] = {}  # id(replacement) -> the original it stands for


def _replacement(original: Any, route: _Route) -> Any:
    """The stand-in put where `original` is bound, made once per original and route (so the same
    object everywhere, and a leftover one is recognized and put back)."""
    key = (id(original), route.kind, route.target)
    made = _replacements.get(key)
    if made is not None and made[0] is original:
        return made[1]
    name, impl = route.name, route.impl
    if route.kind == "count":

        @functools.wraps(original)
        def replacement(*args: Any, **kwargs: Any) -> Any:
            if _census is not None:
                _census.ran[name] += 1
            return original(*args, **kwargs)

    elif impl is None:

        @functools.wraps(original)
        def replacement(*args: Any, **kwargs: Any) -> Any:
            if _census is not None:
                _census.routed[name] += 1
            return None

    else:

        @functools.wraps(impl)
        def replacement(*args: Any, **kwargs: Any) -> Any:
            if _census is not None:
                _census.routed[name] += 1
            return impl(*args, **kwargs)

    _replacements[key] = (original, replacement)
    _originals[id(replacement)] = original
    return replacement


class _Bindings:
    """Every loaded `sglang` module attribute bound to a kernel (with its route) or to a
    BitExactFusionGate (route None). A scan of all of sys.modules costs about 50 ms, so each module is
    scanned once (the kernel facade, which fills in lazily, every time) unless a kernel module arrived
    since (modules scanned before may bind its kernels); a binding is used only while the attribute
    still holds what was found."""

    def __init__(self) -> None:
        self.scanned: dict[str, list[tuple[str, Any, _Route | None]]] = {}
        self.exports: dict[int, tuple[Any, str]] = {}  # id(kernel) -> (kernel, its public name)
        self.kernel_modules: set[str] = set()

    def __call__(self, fallback: Any, gate_type: type) -> Iterator[tuple[Any, str, Any, _Route | None]]:
        names = [name for name in list(sys.modules) if name.startswith("sglang.")]
        arrived = [name for name in names if name.startswith(_KERNEL_PACKAGES) and name not in self.kernel_modules]
        if arrived:
            for name in arrived:
                self._learn_exports(name)
            self.scanned.clear()
        for module_name in names:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            entries = self.scanned.get(module_name)
            if entries is None or module_name == _FACADE:
                entries = self.scanned[module_name] = self._scan(module, fallback, gate_type)
            for attribute, obj, route in entries:
                if module.__dict__.get(attribute) is obj:
                    yield module, attribute, obj, route

    def _learn_exports(self, module_name: str) -> None:
        self.kernel_modules.add(module_name)
        module = sys.modules.get(module_name)
        if module is None or module_name.startswith(_NOT_KERNEL_MODULES):
            return
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            if attribute.startswith("_") or id(value) in _originals or kernel_name(value, attribute) is None:
                continue
            known = self.exports.get(id(value))
            if known is None or known[0] is not value or _identity(value, attribute) == (module_name, attribute):
                self.exports[id(value)] = (value, attribute)  # the defining module's name wins

    def export(self, value: Any) -> str | None:
        known = self.exports.get(id(value))
        return known[1] if known is not None and known[0] is value else None

    def _scan(self, module: Any, fallback: Any, gate_type: type) -> list[tuple[str, Any, _Route | None]]:
        found: list[tuple[str, Any, _Route | None]] = []
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            if isinstance(value, gate_type):
                found.append((attribute, value, None))
            elif id(value) not in _originals and callable(value) and not isinstance(value, type):
                route = _route_for(value, fallback, self.export(value))
                if route is not None:
                    found.append((attribute, value, route))
        return found


_bindings = _Bindings()


class KernelRouting(list[str]):
    """What a native block did, filled in when it ends: its report lines (the list itself: each
    rerouted kernel with the calls it took, the gates and sites turned off) and `ran`, each SGLang
    kernel that still ran, by name and count; `summary` says it in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.ran: dict[str, int] = {}

    @property
    def summary(self) -> str:
        return summarize(self.ran)


def summarize(ran: dict[str, int]) -> str:
    """ "native" when no SGLang kernel ran, else "native except: <kernel> x<count>, ..." (most first)."""
    if not ran:
        return "native"
    listed = sorted(ran.items(), key=lambda item: (-item[1], item[0]))
    return "native except: " + ", ".join(f"{name} x{count}" for name, count in listed)


@contextmanager
def native_kernel_functions(enabled: bool = True, modules: Iterable[Any] = ()) -> Iterator[KernelRouting]:
    """When enabled, within the block: every kernel function bound in a loaded `sglang` module that has
    a torch twin (SGLang's fallback_torch `<name>_native`, else parity.runners.native_twins) is that
    twin, every kernel whose "not applicable" answer is None answers None, FlashInfer's RoPE op in
    SGLang's RoPE helper is its twin, every BitExactFusionGate (module-level, and inside `modules`) is
    disabled and every QualityGatedFusion site off; and a census counts each SGLang kernel that still
    runs. All restored on exit, where the yielded KernelRouting is filled in."""
    routing = KernelRouting()
    if not enabled:
        yield routing
        return
    import importlib

    from sglang.kernels.ops.diffusion.sites.bitexact_gate import BitExactFusionGate

    fallback = importlib.import_module(_FALLBACK_MODULE)
    census = KernelCensus()
    targets: dict[str, str] = {}
    patched: list[tuple[Any, str, Any]] = []
    gates: dict[int, tuple[Any, str | None]] = {}  # id -> (gate, the module binding it; None: an instance's)

    def patch(module: Any, attribute: str, original: Any, route: _Route) -> None:
        setattr(module, attribute, _replacement(original, route))
        patched.append((module, attribute, original))
        if route.kind != "count":
            targets[route.name] = route.target

    with ExitStack() as stack:
        stack.callback(_put_back_leftovers, set(sys.modules))
        stack.callback(_restore, patched)
        for (module_name, attribute), twin in _attribute_twins().items():
            module = sys.modules.get(module_name)
            if module is not None and module.__dict__.get(attribute) is not None:
                twin_route = _Route("twin", attribute, twin, f"parity native_twins.{twin.__name__}")
                patch(module, attribute, module.__dict__[attribute], twin_route)
        for module, attribute, obj, route in _bindings(fallback, BitExactFusionGate):
            if route is None:
                gates[id(obj)] = (obj, module.__name__)
            elif module.__name__ == _FALLBACK_MODULE:
                continue
            elif route.kind != "count" or _calls_kernels(module.__name__):
                patch(module, attribute, obj, route)
        model_modules: set[str] = set()
        for root in modules:
            for sub in root.modules() if hasattr(root, "modules") else ():
                model_modules.add(type(sub).__module__)
                gates.update((id(v), (v, None)) for v in vars(sub).values() if isinstance(v, BitExactFusionGate))
        stack.enter_context(_gates_disabled([gate for gate, _ in gates.values()]))
        stack.enter_context(_quality_sites_off())
        stack.enter_context(_lazy_kernels_routed(fallback, targets))
        stack.enter_context(_launches_counted())
        stack.enter_context(_census_running(census))
        yield routing
    called = sorted((name, target) for name, target in targets.items() if census.routed[name])
    lines = [f"{name} -> {target} x{census.routed[name]}" for name, target in called]
    idle = sorted(name for name in targets if not census.routed[name])
    if idle:
        lines.append("routed, not called: " + ", ".join(idle))
    if gates:
        here = sorted({str(gate.name) for gate, where in gates.values() if where is None or where in model_modules})
        lines.append(
            f"BitExactFusionGate x{len(gates)} disabled (each fast path runs SGLang's eager reference chain); "
            f"in this pipeline's modules: {', '.join(here) or 'none'}"
        )
    lines.append(
        f"request quality {NATIVE_REQUEST['quality']!r} and QualityGatedFusion sites off: no request-gated fast "
        "path (DiT fusion sites, VAE decoder fast paths) runs"
    )
    routing[:] = lines
    routing.ran = dict(census.ran)


def _calls_kernels(module_name: str) -> bool:
    """A kernel is counted where SGLang's model code calls it: outside sglang.kernels, or through the facade."""
    return not module_name.startswith("sglang.kernels.") or module_name == _FACADE


def _attribute_twins() -> dict[tuple[str, str], Callable[..., Any]]:
    from parity.runners import native_twins

    return native_twins.ATTRIBUTE_TWINS


@contextmanager
def _census_running(census: KernelCensus) -> Iterator[None]:
    global _census
    outer, _census = _census, census
    try:
        yield
    finally:
        _census = outer


def _restore(patched: list[tuple[Any, str, Any]]) -> None:
    for module, attribute, original in reversed(patched):
        setattr(module, attribute, original)


def _put_back_leftovers(imported_before: set[str]) -> None:
    """A module imported inside the block (or the facade, which caches lazily) may have bound a stand-in:
    the original goes back there too."""
    for module_name in (set(sys.modules) - imported_before) | {_FACADE}:
        module = sys.modules.get(module_name)
        if module is None or not module_name.startswith("sglang."):
            continue
        for attribute, value in list(getattr(module, "__dict__", {}).items()):
            original = _originals.get(id(value))
            if original is not None:
                setattr(module, attribute, original)


@contextmanager
def _gates_disabled(gates: list[Any]) -> Iterator[None]:
    """Each BitExactFusionGate disabled: its fast path returns SGLang's eager reference chain."""
    saved = [(gate, gate.disabled) for gate in gates]
    for gate in gates:
        gate.disabled = True
    try:
        yield
    finally:
        for gate, disabled in saved:
            gate.disabled = disabled


def _never_enabled(self: Any, module: Any) -> bool:
    return False


@contextmanager
def _quality_sites_off() -> Iterator[None]:
    """QualityGatedFusion.is_enabled answers False (every site reads its flag through it): each
    request-gated fusion runs SGLang's reference path, whatever the request's quality level mounted."""
    from sglang.kernels.ops.diffusion.sites.quality_gate import QualityGatedFusion

    is_enabled = QualityGatedFusion.__dict__["is_enabled"]
    QualityGatedFusion.is_enabled = _never_enabled  # type: ignore[method-assign]
    try:
        yield
    finally:
        QualityGatedFusion.is_enabled = is_enabled  # type: ignore[method-assign]


@contextmanager
def _lazy_kernels_routed(fallback: Any, targets: dict[str, str]) -> Iterator[None]:
    """The kernel facade resolves a symbol on its first access (PEP 562) and caches it: one resolved
    inside the block (a function-level `from sglang.kernels.ops.diffusion import X`) is routed too."""
    facade = sys.modules.get(_FACADE)
    resolve = facade.__dict__.get("__getattr__") if facade is not None else None
    if facade is None or resolve is None:
        yield
        return

    def routed(name: str) -> Any:
        value = resolve(name)
        route = _route_for(value, fallback, name)
        if route is None:
            return value
        replacement = _replacement(value, route)
        facade.__dict__[name] = replacement  # put back on exit (_put_back_leftovers)
        if route.kind != "count":
            targets[route.name] = route.target
        return replacement

    facade.__dict__["__getattr__"] = routed
    try:
        yield
    finally:
        facade.__dict__["__getattr__"] = resolve


@contextmanager
def _launches_counted() -> Iterator[None]:
    """Kernel launches below the Python wrappers, counted while the census runs: every Triton launch
    (Triton's launch hook; SGLang's replayed launches take Triton's runner while a hook is set), every
    call of a JIT kernel SGLang loads in the block (tvm-ffi modules from its JIT loader) and every
    torch.ops.sgl_kernel op."""
    with ExitStack() as stack:
        try:
            from triton import knobs

            chain = knobs.runtime.launch_enter_hook
        except Exception:  # no Triton, or one without the launch-hook chain: no Triton kernel counted
            chain = None
        if hasattr(chain, "add") and hasattr(chain, "remove"):
            chain.add(_count_triton_launch)
            stack.callback(chain.remove, _count_triton_launch)
        loader: Any = None
        try:
            import importlib

            loader = importlib.import_module(_JIT_LOADER)
        except Exception:  # no JIT loader in this SGLang: nothing loads through it
            pass
        load = getattr(loader, "_load", None)
        if callable(load):
            loader._load = lambda library: _CountedJitModule(load(library))
            stack.callback(setattr, loader, "_load", load)
        import torch

        namespace = torch.ops.sgl_kernel
        torch.ops.sgl_kernel = _CountedOp(namespace, "torch.ops.sgl_kernel")  # type: ignore[attr-defined]
        stack.callback(setattr, torch.ops, "sgl_kernel", namespace)
        yield


def _count_triton_launch(metadata: Any) -> None:
    if _census is not None:
        data = getattr(metadata, "data", metadata)
        name = data.get("name") if isinstance(data, dict) else None
        _census.ran[f"triton:{name or '?'}"] += 1


class _CountedJitModule:
    """A JIT-built (tvm-ffi) module whose functions count their calls while a census runs (SGLang
    caches the module or its functions, so they keep counting in later native blocks)."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._functions: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if name.startswith("_") or not callable(value):
            return value
        counted = self._functions.get(name)
        if counted is None:
            counted = self._functions[name] = _counting(value, f"jit:{name}")
        return counted


def _counting(function: Any, label: str) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        if _census is not None:
            _census.ran[label] += 1
        return function(*args, **kwargs)

    return counted


class _CountedOp:
    """torch.ops.sgl_kernel (and each op and overload under it) counting the calls it forwards."""

    def __init__(self, target: Any, label: str) -> None:
        self._target = target
        self._label = label

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        return _CountedOp(value, f"{self._label}.{name}") if callable(value) else value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _census is not None:
            _census.ran[self._label] += 1
        return self._target(*args, **kwargs)
