"""Runners build and run one library's pipeline with taps, filling a Trace.

One `Runner` per side, from `runner_for(side)`: `DiffusersRunner` (the reference, in
`diffusers_runner`) and `SGLangRunner` (the port, in `sglang_runner`); each is the only module that
knows its library's internals, and is imported only when asked for, so importing this package
imports neither library. What both share lives beside them: `parity.inputs` (a case's pipeline
inputs), `cache` (loaded pipelines), `recorder` (the denoising loop), `stage_taps` (tokenizers, VAE
decode), `teacher` (isolated mode), `replay` (the fp64 referee's replay), `port_ops` (the port's
native-ops routing).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from parity.trace import Trace
from parity.vocab import Side

if TYPE_CHECKING:
    from parity.cases import Case
    from parity.families.base import FamilyAdapter


@dataclass
class RunInfo:
    """What a runner ran: its pipeline class, component classes and notes for the report."""

    pipeline: str = ""
    components: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    port_ops: dict = field(default_factory=dict)  # the port's op mode and every op it rerouted
    # The port's process-group degrees as SGLang resolved them, and the DiT's parameter count in this
    # process: a tensor-parallel rank holds only its shard of the split layers.
    parallel: dict = field(default_factory=dict)
    # The port's Req contract as observed (parity.contract): the Req the denoising stage received, the
    # generator when the initial latents were drawn, SGLang's failed stage verifications. Plain data.
    contract: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunOptions:
    """How a runner taps its pipeline beyond the per-stage tensors."""

    block_steps: frozenset[int] = frozenset()  # denoising steps whose DiT blocks are recorded
    teacher: Trace | None = None  # isolated mode (port only): the reference trace to feed in
    replay_step: int | None = None  # fp64 referee: replay a DiT call or block of this step in float64
    replay_block: str | None = None  # ... this block (None: the step's DiT call, its conditional branch)
    # --audit fp64: the DiT call of replay_step replayed in float64 with its blocks recorded (`<name>@fp64`);
    # with a teacher, each block is also run in float64 on the reference's float64 inputs for that block.
    audit: bool = False
    # CFG-parallel ranks (port): this rank runs CFG branch cfg_rank of every cfg_degree (0: the
    # conditional), so its k-th DiT call in a step is branch k * cfg_degree + cfg_rank.
    cfg_rank: int = 0
    cfg_degree: int = 1


class Runner(Protocol):
    """One side's library: loads its pipeline for a model directory (once per process) and runs it."""

    side: Side
    last_info: RunInfo | None  # the RunInfo of the current or last run, set as soon as the pipeline is loaded

    def load(self, model_dir: Path, case: Case, adapter: FamilyAdapter) -> Any:
        """The library's pipeline for this directory and the case's dtype and device (and, for the port,
        op mode), loaded once per process and reused by reruns, the isolated run, the referee and
        benchmarks."""
        ...

    def run(self, model_dir: Path, case: Case, adapter: FamilyAdapter, trace: Trace, options: RunOptions) -> RunInfo:
        """One call of the pipeline on the case with taps, recording into `trace`."""
        ...

    def bare(self, model_dir: Path, case: Case, adapter: FamilyAdapter) -> Any:
        """One call of the loaded pipeline on the case with no taps (the benchmark's "library alone")."""
        ...


def runner_for(side: Side) -> Runner:
    """The runner of `side` (one per process), its library imported only now."""
    return _runner(Side(side))


@functools.cache
def _runner(side: Side) -> Runner:
    if side == Side.REFERENCE:
        from parity.runners.diffusers_runner import DiffusersRunner

        return DiffusersRunner()
    from parity.runners.sglang_runner import SGLangRunner

    return SGLangRunner()


def qualified_name(obj: object) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
