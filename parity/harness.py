"""One parity run: fixture -> both runners -> align -> compare -> verdict -> report."""

from __future__ import annotations

import platform
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from parity import families, fixtures, progress
from parity.align import align
from parity.cases import Case
from parity.compare import Check, compare
from parity.config import tool_config
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.report import write, write_atomic
from parity.runners import RunInfo
from parity.tolerance import Policy
from parity.trace import Trace
from parity.verdict import Verdict, decide

VERSIONED = ("parity", "torch", "diffusers", "transformers", "sglang", "numpy")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def model_dir_for(case: Case, timings: dict[str, float]) -> Path:
    if case.model_dir is not None:
        families.read_model_index(Path(case.model_dir))  # a clear error for a non-model dir
        return Path(case.model_dir)
    with progress.phase("fixture", timings, f"fixture {case.fixture}: building or reusing cached copy"):
        path, built = fixtures.ensure(case.fixture)
    progress.say(f"fixture {'built' if built else 'cached'} at {path}")
    return path


def _run_side(
    side: str,
    runner: Any,
    model_dir: Path,
    case: Case,
    adapter: FamilyAdapter,
    trace: Trace,
    out_dir: Path,
    timings: dict[str, float],
) -> RunInfo:
    label = "Diffusers (reference)" if side == "reference" else "SGLang (port)"
    with progress.phase(side, timings, f"running {label} on {case.device}, {case.dtype}"):
        try:
            return runner.run(model_dir, case, adapter, trace)
        except ParityError:
            raise
        except Exception as exc:
            # The library itself failed: keep the traceback for whoever debugs it.
            write_atomic(out_dir / f"{side}-traceback.txt", traceback.format_exc())
            raise ParityError(
                f"{label} failed: {type(exc).__name__}: {exc} (traceback in {side}-traceback.txt)"
            ) from exc


def run_case(case: Case, out_dir: Path, plugins: list[str] = ()) -> tuple[Verdict, dict[str, Any]]:
    """Run both sides, compare, and write the report. Never raises ParityError: an error becomes
    verdict `error` with whatever was already compared in the report."""
    from parity.runners import diffusers_runner, sglang_runner

    timings: dict[str, float] = {}
    reference, port = Trace("reference"), Trace("port")
    infos: dict[str, RunInfo] = {}
    adapter: FamilyAdapter | None = None
    policy: Policy | None = None
    error: str | None = None
    notes: list[str] = []
    try:
        pyproject, tool = tool_config()
        layers = [(f"{pyproject}", tool.get("tolerance", {}))] if tool else []
        layers.append((f"case {case.name}", case.tolerance))
        policy = Policy(case.dtype, layers)
        model_dir = model_dir_for(case, timings)
        adapter = families.get(case.family) if case.family else families.detect(model_dir)
        for side, runner, trace in (
            ("reference", diffusers_runner, reference),
            ("port", sglang_runner, port),
        ):
            infos[side] = _run_side(side, runner, model_dir, case, adapter, trace, out_dir, timings)
    except ParityError as exc:
        error = exc.one_line()
    checks: list[Check] = []
    with progress.phase("compare", timings, "comparing"):
        if adapter is not None and policy is not None:
            try:
                pairs = align(reference, port, adapter)
                if error is not None:  # a side stopped early: compare only what both produced
                    pairs = [p for p in pairs if p.reference is not None and p.port is not None]
                checks = compare(pairs, policy)
            except ParityError as exc:
                error = error or exc.one_line()
    verdict = decide(checks, error)
    if case.expected == "fail":
        notes.append(f"expected to fail: {case.reason}")
    context = {
        "case": case.as_dict(),
        "family": adapter.name if adapter else None,
        "versions": versions(),
        "pipelines": {side: info.pipeline for side, info in infos.items()},
        "components": {side: info.components for side, info in infos.items()},
        "plugins": list(plugins),
        "timings_s": timings,
        "notes": notes + [n for info in infos.values() for n in info.notes],
    }
    with progress.phase("report", timings, f"writing report to {out_dir}"):
        doc = write(out_dir, verdict, checks, context)
    return verdict, doc
