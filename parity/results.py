"""What one run found, as typed results: a Comparison per port trace and the RunReport that the
report writers, the CLI, the suite and the benchmarks read. Pure: no library is imported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parity import components, hints
from parity.compare import Check
from parity.verdict import Verdict, decide
from parity.vocab import Mode, Outcome

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Comparison:
    """One port trace against the reference: its checks in execution order, the verdict on them
    alone, and the decoded frames' noise section (None when a side produced no frames)."""

    mode: Mode  # FULL: the port ran on its own; ISOLATED: teacher-forced
    checks: tuple[Check, ...]
    verdict: Verdict
    noise: dict | None = None

    @classmethod
    def judge(
        cls, mode: Mode, checks: tuple[Check, ...], noise: dict | None = None, error: str | None = None
    ) -> Comparison:
        return cls(mode, checks, decide(checks, error, isolated=mode is Mode.ISOLATED), noise)

    def rows(self) -> list[dict]:
        return [check.row(self.verdict.role(check)) for check in self.checks]

    @property
    def summary(self) -> dict[str, int]:
        passed = sum(c.passed for c in self.checks)
        return {"checks": len(self.checks), "passed": passed, "failed": len(self.checks) - passed}


def port_ops_both(kernels: Verdict, native: Verdict, native_mode: Mode) -> dict[str, Any]:
    """`--port-ops both`: where the port diverges on its kernels but not on its native ops, the
    divergence is in a kernel, not in the port's logic. Both verdicts are their own comparison's, made
    in the same mode (`native_mode`: teacher-forced in isolated mode)."""
    if kernels.outcome is Outcome.ERROR:
        conclusion = f"the port could not run on its kernels ({kernels.error}); its native ops: {native.outcome}"
    elif kernels.first is not None and native.outcome is Outcome.PASS:
        conclusion = (
            f"diverges on SGLang's kernels (first at {kernels.first.label()}) but not on its native "
            "ops: the divergence is in a kernel, not in the port's logic"
        )
    elif native.outcome is Outcome.FAIL:
        conclusion = "diverges on its native ops too: the port's logic (or its native ops) diverges"
    else:
        conclusion = "passes on both its kernels and its native ops"
    return {
        "mode": native_mode,
        "kernels": kernels.outcome,
        "native": native.outcome,
        "native_first_divergence": native.first_divergence,
        "conclusion": conclusion,
    }


def combine(
    main: Comparison, isolated: Comparison | None, parallel: ParallelResult | None = None
) -> tuple[Verdict, Comparison]:
    """The run fails when any of its comparisons fails. Returns the run's verdict and the comparison
    it came from: the main one, unless it passes and another does not: the isolated run's (`--mode
    both`), then the ranks' agreement or their comparison with the one-rank port (`--port-parallel`)."""
    if main.verdict.outcome is not Outcome.PASS:
        return main.verdict, main
    if isolated is not None and main.mode is Mode.FULL and isolated.verdict.outcome is Outcome.FAIL:
        return isolated.verdict, isolated
    failing = parallel.failing() if parallel is not None else None
    if failing is not None:
        return failing.verdict, failing
    return main.verdict, main


@dataclass(frozen=True)
class ParallelResult:
    """`--port-parallel`: the ranks' own comparisons beside the main one (the ranks against the
    reference). `vs_one_rank`: the merged ranks against the same port run at one rank, at the
    one-rank tolerances: where it first diverges, the parallel path is to blame. `agreement`: each
    tensor every rank holds whole, rank against rank (a collective on the wrong group, a rank-dependent
    value)."""

    degrees: dict[str, int]
    # each rank's place (rank, tp, sp, ulysses, ring, cfg), SGLang's resolved degrees and its DiT's size
    ranks: list[dict[str, Any]]
    sharded: int  # records put together from sequence shards
    vs_one_rank: Comparison
    agreement: Comparison
    one_rank_dit_parameters: int | None = None  # the DiT's size at one rank (a TP rank holds less)

    def failing(self) -> Comparison | None:
        """The first of the two that does not pass (agreement first: it is the more basic)."""
        for comparison in (self.agreement, self.vs_one_rank):
            if comparison.verdict.outcome is not Outcome.PASS:
                return comparison
        return None

    def conclusion(self, main: Verdict) -> str:
        world = f"the {self.degrees['world_size']}-rank port"
        agreement, one_rank = self.agreement.verdict, self.vs_one_rank.verdict
        if agreement.first is not None:
            return (
                f"the ranks disagree on {agreement.first.label()}, a tensor every rank holds whole: the "
                "parallel path is to blame (a collective on the wrong group, or a rank-dependent value)"
            )
        if one_rank.first is not None:
            return (
                f"{world} diverges from the same port at one rank first at {one_rank.first.label()}: the "
                "parallel path is to blame (a shard, gather, padding or head split), not the port's logic"
            )
        if main.first is not None:
            return (
                f"{world} matches its one-rank run; its divergence from the reference (first at "
                f"{main.first.label()}) is the port's own, not the parallelism's"
            )
        return f"{world} matches the reference and its one-rank run"

    def as_json(self, main: Verdict) -> dict[str, Any]:
        return {
            "degrees": self.degrees,
            "world_size": self.degrees["world_size"],
            "ranks": self.ranks,
            "sharded_records": self.sharded,
            "one_rank_dit_parameters": self.one_rank_dit_parameters,
            "conclusion": self.conclusion(main),
            "vs_one_rank": _section(self.vs_one_rank),
            "rank_agreement": _section(self.agreement),
        }


def _section(comparison: Comparison) -> dict[str, Any]:
    """A side comparison in report.json: its verdict, where it first diverges, the largest block and
    frame differences, and its checks."""
    blocks = [c.metrics.max_abs for c in comparison.checks if c.block is not None and c.metrics is not None]
    frames = [c.metrics.max_abs for c in comparison.checks if c.tensor == "frames" and c.metrics is not None]
    return {
        "verdict": comparison.verdict.outcome,
        "first_divergence": comparison.verdict.first_divergence,
        "error": comparison.verdict.error,
        "summary": comparison.summary,
        "worst_block_max_abs": max(blocks, default=None),
        "frames_max_abs": frames[0] if frames else None,
        "checks": comparison.rows(),
    }


@dataclass
class RunReport:
    """Everything one run found and how it ran; `as_json()` is report.json's document."""

    mode: Mode
    case: dict[str, Any]
    main: Comparison  # the full run's comparison (the isolated run's in isolated mode)
    verdict: Verdict  # the run's verdict: main's, or the isolated run's when only that one fails
    decided_by: Comparison  # the comparison the verdict, its causes and hints come from
    family: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    pipelines: dict[str, str] = field(default_factory=dict)
    components: dict[str, dict[str, str]] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    port_ops: dict | None = None
    capture: dict[str, Any] = field(default_factory=dict)
    referee: dict | None = None
    frames_png: list[str] = field(default_factory=list)
    trace_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    native: Comparison | None = None  # --port-ops both: the port on its native ops
    isolated: Comparison | None = None  # --mode isolated / both
    parallel: ParallelResult | None = None  # --port-parallel
    cfg: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)
    gpu_peak_mib: dict[str, float] | None = None
    device_numerics: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)
    # The port's Req contract as observed (parity.contract.section): its fields, SGLang's failed stage
    # verifications, the skill's rules the pinned code does not follow (warnings); None: not observed.
    contract: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None  # --audit fp64 (parity.audit.summary); None: not asked for

    @property
    def checks(self) -> tuple[Check, ...]:
        return self.main.checks

    @property
    def decided_by_name(self) -> str | None:
        """Which comparison the verdict comes from when it is not the main one: "isolated",
        "parallel.vs_one_rank" or "parallel.rank_agreement" (None: the main one)."""
        if self.decided_by is self.main:
            return None
        if self.parallel is not None and self.decided_by is self.parallel.vs_one_rank:
            return "parallel.vs_one_rank"
        if self.parallel is not None and self.decided_by is self.parallel.agreement:
            return "parallel.rank_agreement"
        return str(self.decided_by.mode)

    @property
    def hints(self) -> list[dict]:
        beside = None if self.isolated is None or self.decided_by is self.isolated else list(self.isolated.checks)
        return hints.for_causes(self.verdict.causes, list(self.decided_by.checks), beside)

    @property
    def summary(self) -> dict[str, int]:
        return self.main.summary

    def isolated_section(self) -> dict[str, Any] | None:
        if self.isolated is None:
            return None
        return {
            "verdict": self.isolated.verdict.outcome,
            "components": components.table(list(self.isolated.checks), self.cfg),
            "checks": self.isolated.rows() if self.mode is Mode.BOTH else "see checks",
        }

    def as_json(self) -> dict[str, Any]:
        """report.json's document (before JSON's NaN/Inf are made safe by the writer)."""
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict.outcome,
            "first_divergence": self.verdict.first_divergence,
            "error": self.verdict.error,
            "summary": self.summary,
        }
        if self.decided_by_name is not None:  # the main comparison passes, another one does not
            doc["decided_by"] = self.decided_by_name
        doc |= {
            "mode": self.mode,
            "case": self.case,
            "family": self.family,
            "versions": self.versions,
            "pipelines": self.pipelines,
            "components": self.components,
            "plugins": self.plugins,
            "port_ops": self.port_ops,
            "capture": self.capture,
            "contract": self.contract,
            "causes": self.verdict.cause_list,
            "hints": self.hints,
            "referee": self.referee,
            "audit": self.audit,
            "noise": self.main.noise,
            "frames_png": self.frames_png,
            "trace_bytes": self.trace_bytes,
        }
        if self.native is not None:
            doc["port_ops_both"] = port_ops_both(self.main.verdict, self.native.verdict, self.native.mode)
        if self.isolated is not None:
            doc["isolated"] = self.isolated_section()
        if self.parallel is not None:
            doc["parallel"] = self.parallel.as_json(self.main.verdict)
        doc |= {
            "timings_s": self.timings_s,
            "gpu_peak_mib": self.gpu_peak_mib,
            "device_numerics": self.device_numerics,
            "notes": self.notes,
            "checks": self.main.rows(),
        }
        return doc
