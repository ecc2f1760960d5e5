"""Taps: hooks and wrappers around a library's own objects that record tensors, then come off.

The runners decide *what* to tap (they know their library); this module only knows *how*:
wrap an instance's method, hook an instance's `__call__`, add a forward hook. Every tap is
undone when the `Taps` context exits, so a pipeline is left as it was found.
"""

from __future__ import annotations

import copy
import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

from parity.interrupts import checkpoint

# (args, kwargs, result) -> None, or a replacement for the result (teacher forcing)
OnCall = Callable[[tuple, dict, Any], Any]
# (args, kwargs) -> None, or replacement (args, kwargs) for the call (teacher forcing)
Before = Callable[[tuple, dict], "tuple[tuple, dict] | None"]


def _replaced(result: Any, replacement: Any) -> Any:
    return result if replacement is None else replacement


class _Tapped:
    """A tapped method (Taps.wrap_method), with the original's name, doc and signature. A deep copy of the
    tapped object gets the copy's own untapped method, so the tap stays on the object it was put on: LTX-2's
    pipelines (both libraries) deep-copy their scheduler for the audio latents after the harness tapped it,
    and the copy's calls must neither be recorded nor run on the original."""

    def __init__(self, obj: Any, original: Any, call: Callable[..., Any]) -> None:
        self._obj, self._original, self._call = obj, original, call
        functools.update_wrapper(self, original)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __deepcopy__(self, memo: dict) -> Any:
        if isinstance(self._original, _Tapped):  # tapped twice: the inner tap knows the method
            return copy.deepcopy(self._original, memo)
        duplicate = memo.get(id(self._obj))  # deepcopy registers the copy before copying its attributes
        function = getattr(self._original, "__func__", None)
        if duplicate is not None and function is not None and getattr(self._original, "__self__", None) is self._obj:
            return types.MethodType(function, duplicate)
        return self


class Taps:
    """Collects taps and removes them all on exit (in reverse order)."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()

    def set_attribute(self, obj: Any, name: str, value: Any) -> None:
        """`obj.name = value` until the taps are removed, then the attribute as it was."""
        saved = getattr(obj, name)
        setattr(obj, name, value)
        self._undo.append(lambda: setattr(obj, name, saved))

    def wrap_method(self, obj: Any, name: str, on_call: OnCall, before: Before | None = None) -> None:
        """Call `on_call(args, kwargs, result)` after every `obj.name(...)` (and `before(args,
        kwargs)` ahead of it); either may return a replacement (teacher forcing).

        Patches the instance attribute only: other instances of the class are untouched.
        """
        original = getattr(obj, name)
        had_own = name in vars(obj)

        def tapped(*args: Any, **kwargs: Any) -> Any:
            checkpoint()  # every tap is a safe point for Ctrl-C (parity.interrupts)
            if before is not None:
                args, kwargs = _replaced((args, kwargs), before(args, kwargs))
            result = original(*args, **kwargs)
            return _replaced(result, on_call(args, kwargs, result))

        setattr(obj, name, _Tapped(obj, original, tapped))

        def undo() -> None:
            if had_own:
                setattr(obj, name, original)
            else:
                delattr(obj, name)

        self._undo.append(undo)

    def hook_call(self, obj: Any, on_call: OnCall) -> None:
        """Tap `obj(...)` for one instance: Python looks `__call__` up on the type, so give
        this instance a private subclass whose `__call__` records, and restore the class after."""
        cls = type(obj)
        original = cls.__call__

        # functools.wraps keeps the signature visible (inspect follows __wrapped__): a library that
        # inspects the callable's parameters (SGLang filters a processor's kwargs by them) sees the same.
        @functools.wraps(original)
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            checkpoint()
            result = original(self, *args, **kwargs)
            return _replaced(result, on_call(args, kwargs, result))

        obj.__class__ = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})
        self._undo.append(lambda: setattr(obj, "__class__", cls))

    def forward_hook(self, module: Any, on_call: OnCall) -> None:
        """A torch forward hook (with kwargs) that records after `module(...)`; a non-None return
        replaces the module's output."""

        def hook(_module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            checkpoint()
            return on_call(args, kwargs, output)

        handle = module.register_forward_hook(hook, with_kwargs=True)
        self._undo.append(handle.remove)

    def forward_pre_hook(self, module: Any, on_call: Before) -> None:
        """A torch forward pre-hook (with kwargs) that records before `module(...)` runs; a non-None
        return replaces its (args, kwargs)."""

        def hook(_module: Any, args: tuple, kwargs: dict) -> Any:
            checkpoint()
            return on_call(args, kwargs)

        handle = module.register_forward_pre_hook(hook, with_kwargs=True)
        self._undo.append(handle.remove)


def first_tensor(result: Any) -> Any:
    """The main tensor of a library call's result: a tuple's first item, `.sample`,
    `.prev_sample`, or the result itself."""
    if isinstance(result, (tuple, list)):
        return result[0]
    for attr in ("prev_sample", "sample"):
        if hasattr(result, attr):
            return getattr(result, attr)
    return result


def argument(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    """A call's argument by position or by keyword."""
    return args[index] if len(args) > index else kwargs[name]


def replace_argument(args: tuple, kwargs: dict, index: int, name: str, value: Any) -> tuple[tuple, dict]:
    """The call's (args, kwargs) with that argument (by position or keyword) replaced; as is when `value` is None."""
    if value is None:
        return args, kwargs
    if len(args) > index:
        return (*args[:index], value, *args[index + 1 :]), kwargs
    return args, {**kwargs, name: value}


def replace_first(result: Any, value: Any) -> Any:
    """`result` with its main tensor replaced (a tuple's first item, or the tensor itself)."""
    if value is None:
        return None
    if isinstance(result, tuple):
        return (value, *result[1:])
    return value


def named_arguments(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A module call's leading positional arguments bound to the names of its `forward`, so a block
    that its DiT calls positionally (Wan's blocks, in both libraries) is read and fed by name.
    Arguments that cannot be named (positional-only, *args) stay positional."""
    if not args:
        return args, kwargs
    names = [
        p.name
        for p in inspect.signature(module.forward).parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    if len(args) > len(names) or any(name in kwargs for name in names[: len(args)]):
        return args, kwargs
    return (), {**dict(zip(names, args, strict=False)), **kwargs}


def _positional_names(module: Any) -> list[str]:
    return [
        p.name
        for p in inspect.signature(module.forward).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]


def bound_arguments(module: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """A module call's arguments by the names of its `forward`, for reading: the leading positional
    ones are named even when further positional ones go to *args, which `named_arguments` must leave
    positional (Diffusers' HunyuanVideo blocks are called with 7 positional arguments, 5 of them named)."""
    return {**dict(zip(_positional_names(module), args, strict=False)), **kwargs}


def set_arguments(module: Any, args: tuple, kwargs: dict, values: dict[str, Any]) -> tuple[tuple, dict]:
    """The call's (args, kwargs) with each of `values` put in by name: at its position when the call
    passes it positionally, else as a keyword."""
    positions = {name: i for i, name in enumerate(_positional_names(module)) if i < len(args)}
    items = list(args)
    for name, value in values.items():
        if name in positions:
            items[positions[name]] = value
        else:
            kwargs = {**kwargs, name: value}
    return tuple(items), kwargs
