"""Loaded pipelines, built once per process and reused by reruns, the isolated run, the referee and
benchmarks (taps come off after each run, so a reused pipeline is as it was built)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class PipelineCache(Generic[T]):
    """One runner's loaded pipelines by key (what the pipeline was built with: directory, dtype, ...)."""

    def __init__(self) -> None:
        self._loaded: dict[Hashable, T] = {}

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The pipeline built for `key`, built by `build()` on first use (nothing is kept if it raises)."""
        if key not in self._loaded:
            self._loaded[key] = build()
        return self._loaded[key]
