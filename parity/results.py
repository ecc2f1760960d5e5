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


def combine(main: Comparison, isolated: Comparison | None) -> tuple[Verdict, Comparison]:
    """`--mode both`: the run fails when either comparison fails. Returns the run's verdict and the
    comparison it came from (the full run's, unless only the isolated run fails)."""
    if (
        isolated is not None
        and main.mode is Mode.FULL
        and main.verdict.outcome is Outcome.PASS
        and isolated.verdict.outcome is Outcome.FAIL
    ):
        return isolated.verdict, isolated
    return main.verdict, main


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
    cfg: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)
    gpu_peak_mib: dict[str, float] | None = None
    device_numerics: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def checks(self) -> tuple[Check, ...]:
        return self.main.checks

    @property
    def hints(self) -> list[dict]:
        return hints.for_causes(self.verdict.causes, list(self.decided_by.checks))

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
        if self.decided_by is not self.main:  # --mode both, and only the isolated run fails
            doc["decided_by"] = self.decided_by.mode
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
            "causes": self.verdict.cause_list,
            "hints": self.hints,
            "referee": self.referee,
            "noise": self.main.noise,
            "frames_png": self.frames_png,
            "trace_bytes": self.trace_bytes,
        }
        if self.native is not None:
            doc["port_ops_both"] = port_ops_both(self.main.verdict, self.native.verdict, self.native.mode)
        if self.isolated is not None:
            doc["isolated"] = self.isolated_section()
        doc |= {
            "timings_s": self.timings_s,
            "gpu_peak_mib": self.gpu_peak_mib,
            "device_numerics": self.device_numerics,
            "notes": self.notes,
            "checks": self.main.rows(),
        }
        return doc
