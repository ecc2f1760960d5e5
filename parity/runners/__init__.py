"""Runners build and run one library's pipeline with taps, filling a Trace.

Each runner is the only module that knows its library's internals:
`diffusers_runner` (the reference) and `sglang_runner` (the port).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from parity.trace import Trace


@dataclass
class RunInfo:
    """What a runner ran: its pipeline class, component classes and notes for the report."""

    pipeline: str = ""
    components: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    port_ops: dict = field(default_factory=dict)  # the port's op mode and every op it rerouted


@dataclass(frozen=True)
class RunOptions:
    """How a runner taps its pipeline beyond the per-stage tensors."""

    block_steps: frozenset[int] = frozenset()  # denoising steps whose DiT blocks are recorded
    teacher: Trace | None = None  # isolated mode (port only): the reference trace to feed in
    replay_step: int | None = None  # fp64 referee: replay this step's DiT call and blocks in float64


def qualified_name(obj: object) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
