"""One parity run: fixture -> both runners -> align -> compare -> verdict -> report."""

from __future__ import annotations

import dataclasses
import functools
import platform
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from parity import components, device, families, fixtures, frames, hints, progress, referee, stages
from parity.align import align
from parity.capture import BlockCapture
from parity.cases import Case
from parity.compare import Check, compare
from parity.config import tool_config
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.report import write, write_atomic
from parity.runners import RunInfo, RunOptions
from parity.tolerance import Policy
from parity.trace import Key, Trace
from parity.verdict import Verdict, decide

VERSIONED = ("parity", "torch", "diffusers", "transformers", "sglang", "numpy")


def versions() -> dict[str, str]:
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    """Read once per process: importlib.metadata scans site-packages on every call."""
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
    model_dir: Path,
    case: Case,
    adapter: FamilyAdapter,
    trace: Trace,
    options: RunOptions,
    out_dir: Path,
    timings: dict[str, float],
    phase: str,
) -> RunInfo:
    from parity.runners import diffusers_runner, sglang_runner

    runner = diffusers_runner if side == "reference" else sglang_runner
    label = "Diffusers (reference)" if side == "reference" else "SGLang (port)"
    blocks = f", blocks at steps {sorted(options.block_steps)}" if options.block_steps else ""
    with progress.phase(phase, timings, f"running {label} on {case.device}, {case.dtype}{blocks}"):
        try:
            return runner.run(model_dir, case, adapter, trace, options)
        except ParityError:
            raise
        except Exception as exc:
            # The library itself failed: keep the traceback for whoever debugs it.
            write_atomic(out_dir / f"{side}-traceback.txt", traceback.format_exc())
            raise ParityError(
                f"{label} failed: {type(exc).__name__}: {exc} (traceback in {side}-traceback.txt)"
            ) from exc


def _first_failing_step(checks: list[Check]) -> int | None:
    steps = [c.step for c in checks if not c.passed and c.step is not None and c.block is None]
    return min(steps) if steps else None


def _trace_bytes(trace: Trace) -> dict[str, int]:
    sizes = [(r.key.block is not None, r.value.numel() * r.value.element_size()) for r in trace]
    return {"total": sum(n for _, n in sizes), "blocks": sum(n for is_block, n in sizes if is_block)}


def _referee_target(checks: list[Check]) -> Check | None:
    """The first cause, when it is something the fp64 referee can replay: a DiT call (the
    conditional/only branch) or a DiT block, at one step."""
    causes = [c for c in checks if c.role == "cause"]
    if not causes:
        return None
    first = min(causes, key=Check.execution_key)
    if first.step is None or stages.is_block_input(first.block):
        return None
    if first.block is not None or first.tensor in ("noise_pred_cond", "noise_pred"):
        return first
    return None


def run_referee(target: Check, checks: list[Check], case: Case, adapter: FamilyAdapter, run) -> dict[str, Any]:
    """Replay the target's component in float64 on both sides (the port teacher-forced) and judge.
    When the port is equivalent, every failing check of the same component (tensor and block, any
    step) is passed as `referee_equivalent`."""
    if target.tensor == "noise_pred" and case.cfg_enabled:
        return {"skipped": "under CFG the guided noise_pred is the CFG combine, not a DiT call"}
    step = target.step
    options = RunOptions(block_steps=frozenset({step}), replay_step=step)
    reference = Trace("reference", case.device)
    run("reference", reference, options, "referee_reference")
    port = Trace("port", case.device)
    run("port", port, RunOptions(block_steps=options.block_steps, replay_step=step, teacher=reference), "referee_port")
    keys = [Key(target.tensor, step, target.block), Key(target.tensor + referee.FP64, step, target.block)]
    found = [trace.get(key) for trace in (reference, port) for key in keys]
    if any(r is None for r in found):
        return {"skipped": f"the fp64 replay recorded no {target.label()}"}
    values = [adapter.to_canonical(r) for r in found]
    judgement = referee.judge(target.tensor, step, target.block, values[0], values[2], values[1], values[3])
    if judgement.equivalent:
        for check in checks:
            if not check.passed and check.tensor == target.tensor and check.block == target.block:
                check.passed, check.status, check.role = True, "referee_equivalent", None
                check.message += "; numerically equivalent by the fp64 referee"
    return judgement.as_dict()


def _port_ops_both(kernel_checks: list[Check], native_checks: list[Check], error: str | None) -> dict[str, Any]:
    """`--port-ops both`: where the port diverges on its kernels but not on its native ops, the
    divergence is in a kernel, not in the port's logic."""
    native = decide(native_checks)
    kernels = decide(kernel_checks, error)
    if kernels.verdict == "error":
        conclusion = f"the port could not run on its kernels ({error}); its native ops: {native.verdict}"
    elif kernels.verdict == "fail" and native.verdict == "pass":
        conclusion = (
            f"diverges on SGLang's kernels (first at {kernels.first_check.label()}) but not on its native "
            "ops: the divergence is in a kernel, not in the port's logic"
        )
    elif native.verdict == "fail":
        conclusion = "diverges on its native ops too: the port's logic (or its native ops) diverges"
    else:
        conclusion = "passes on both its kernels and its native ops"
    return {
        "kernels": kernels.verdict,
        "native": native.verdict,
        "native_first_divergence": native.first_divergence,
        "conclusion": conclusion,
    }


def _frame_pixels(traces: dict[str, Trace], port: str, adapter: FamilyAdapter | None) -> list[tuple[str, Any]]:
    """The reference's and the port's decoded frames as 8-bit pixels on the host, with their PNG names."""
    pixels: list[tuple[str, Any]] = []
    for stem, name in (("reference", "reference"), ("port", port)):
        record = traces[name].get(Key("frames"))
        if record is not None and adapter is not None:
            pixels += frames.png_pixels(adapter.to_canonical(record), stem)
    return pixels


def _policy(case: Case) -> Policy:
    pyproject, tool = tool_config()
    layers = [(f"{pyproject}", tool.get("tolerance", {}))] if tool else []
    layers.append((f"case {case.name}", case.tolerance))
    return Policy(case.dtype, layers, device=case.device)


MODES = ("full", "isolated", "both")


def run_case(
    case: Case,
    out_dir: Path,
    plugins: list[str] = (),
    capture: BlockCapture | None = None,
    mode: str = "full",
    referee_mode: str | None = None,
) -> tuple[Verdict, dict[str, Any]]:
    """Run both sides, compare, and write the report (see `_run_case`), with the device numerics
    that the run fixes for both sides alike (parity.device) in force."""
    with (
        device.numerics(case.device, case.dtype) as fixed,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="parity-png") as png_writer,
    ):
        return _run_case(case, out_dir, png_writer, plugins, capture, mode, referee_mode, fixed)


def _run_case(
    case: Case,
    out_dir: Path,
    png_writer: ThreadPoolExecutor,
    plugins: list[str] = (),
    capture: BlockCapture | None = None,
    mode: str = "full",
    referee_mode: str | None = None,
    fixed_numerics: dict[str, str] | None = None,
) -> tuple[Verdict, dict[str, Any]]:
    """Run both sides, compare, and write the report. Never raises ParityError: an error becomes
    verdict `error` with whatever was already compared in the report.

    mode `full`: the port runs on its own and the first divergence is the earliest failure.
    mode `isolated`: the port runs teacher-forced on the reference's values, so every component is
    judged on its own; `both` does the two and reports the isolated table beside the full run.
    referee_mode `fp64`: when the run fails, replay the first cause in float64 (parity.referee).
    """
    capture = capture or BlockCapture()
    timings: dict[str, float] = {}
    traces = {side: Trace(side.replace("isolated", "port"), case.device) for side in ("reference", "port", "isolated")}
    infos: dict[str, RunInfo] = {}
    adapter: FamilyAdapter | None = None
    policy: Policy | None = None
    error: str | None = None
    checks: dict[str, list[Check]] = {}
    noise: dict[str, dict] = {}  # the report's `noise` section, per port trace
    captured: set[int] = set()
    gpu_peak_mib: dict[str, float] = {}

    def compare_traces(port: str) -> list[Check]:
        with progress.phase("compare", timings, f"comparing ({'isolated' if port == 'isolated' else 'full'})"):
            pairs = align(traces["reference"], traces[port], adapter)
            if error is not None:  # a side stopped early: compare only what both produced
                pairs = [p for p in pairs if p.reference is not None and p.port is not None]
            found = compare(pairs, policy)
            decoded = [trace.get(Key("frames")) for trace in (traces["reference"], traces[port])]
            if all(decoded):
                reference_frames, port_frames = (adapter.to_canonical(r) for r in decoded)
                extra, noise[port] = frames.checks(reference_frames, port_frames, case.dtype, len(found))
                found += extra
            return sorted(found, key=Check.execution_key)

    pngs: list[Future] = []

    def start_pngs(port: str) -> None:
        """Both sides' frames as PNG files, encoded and written in the background (the GIL is
        released there) while the comparison runs; the pixels come to the host here, once."""
        if not pngs:
            pngs.append(png_writer.submit(frames.write_pngs, _frame_pixels(traces, port, adapter), out_dir))

    def run(side: str, trace: Trace, options: RunOptions, phase: str) -> RunInfo:
        cuda = case.device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        info = _run_side(side, model_dir, case, adapter, trace, options, out_dir, timings, phase)
        if cuda:  # peak GPU memory of this side's run, the records it keeps on the GPU included
            gpu_peak_mib[phase] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return info

    try:
        if mode not in MODES:
            raise ParityError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
        if case.device == "cuda" and not torch.cuda.is_available():
            raise ParityError("--device cuda, but torch sees no CUDA device on this machine")
        policy = _policy(case)
        model_dir = model_dir_for(case, timings)
        adapter = families.get(case.family) if case.family else families.detect(model_dir)
        options = RunOptions(block_steps=capture.first_pass(case.steps))
        captured |= options.block_steps
        infos["reference"] = run("reference", traces["reference"], options, "reference")
        if case.port_ops == "both":
            # The port once on SGLang's own kernels (the main verdict) and once on its native ops.
            traces["native"] = Trace("port", case.device)
            native_case = dataclasses.replace(case, port_ops="native")
            _run_side(
                "port", model_dir, native_case, adapter, traces["native"], options, out_dir, timings, "port_native"
            )
            checks["native"] = compare_traces("native")
            case = dataclasses.replace(case, port_ops="kernels")
        if mode != "isolated":
            infos["port"] = run("port", traces["port"], options, "port")
            start_pngs("port")
            checks["full"] = compare_traces("port")
            rerun = capture.second_pass(options.block_steps, _first_failing_step(checks["full"]))
            if rerun:
                # Blocks of the first failing step: run both sides again capturing only that step
                # (the runs are deterministic), so memory never holds more than the policy's steps.
                progress.say(f"first failing step {min(rerun)} was not block-captured: running both sides again")
                captured |= rerun
                for side in ("reference", "port"):
                    again = Trace(side, case.device)
                    run(side, again, RunOptions(block_steps=rerun), f"{side}_rerun")
                    traces[side].extend(r for r in again if r.key.block is not None)
                checks["full"] = compare_traces("port")
        if mode != "full":
            teacher = RunOptions(block_steps=frozenset(captured), teacher=traces["reference"])
            infos["port"] = run("port", traces["isolated"], teacher, "port_isolated")
            if mode == "isolated":
                start_pngs("isolated")
            checks["isolated"] = compare_traces("isolated")
    except ParityError as exc:
        error = exc.one_line()
        if adapter is not None and policy is not None:
            for kind, port in (("full", "port"), ("isolated", "isolated")):
                if len(traces[port]) and kind not in checks:
                    checks[kind] = compare_traces(port)
    main_kind = "isolated" if mode == "isolated" else "full"
    main_checks = checks.get(main_kind, [])
    verdict = decide(main_checks, error, isolated=main_kind == "isolated")
    judged: dict[str, Any] | None = None
    if referee_mode == "fp64" and verdict.verdict == "fail":
        target = _referee_target(main_checks)
        if target is None:
            judged = {
                "skipped": "the fp64 referee replays DiT calls and DiT blocks; the first cause is "
                f"{verdict.first_check.label()}"
            }
        else:
            try:
                judged = run_referee(target, main_checks, case, adapter, run)
                verdict = decide(main_checks, error, isolated=main_kind == "isolated")
            except ParityError as exc:
                judged = {"skipped": f"fp64 replay failed: {exc.one_line()}"}
    start_pngs("isolated" if main_kind == "isolated" else "port")  # a run that stopped early: what there is
    context: dict[str, Any] = {
        "mode": mode,
        "case": case.as_dict(),
        "family": adapter.name if adapter else None,
        "versions": versions(),
        "pipelines": {side: info.pipeline for side, info in infos.items()},
        "components": {side: info.components for side, info in infos.items()},
        "plugins": list(plugins),
        "port_ops": infos["port"].port_ops if "port" in infos else None,
        "capture": {"block_policy": capture.describe(), "block_steps": sorted(captured), "block_branch": "conditional"},
        "causes": verdict.causes,
        "hints": hints.for_checks(main_checks),
        "referee": judged,
        "noise": noise.get("isolated" if main_kind == "isolated" else "port"),
        "frames_png": pngs[0].result(),
        "trace_bytes": {name: _trace_bytes(trace) for name, trace in traces.items() if len(trace)},
    }
    if mode == "both" and "isolated" in checks:
        isolated = decide(checks["isolated"], isolated=True)
        if isolated.verdict == "fail" and verdict.verdict == "pass":
            verdict = Verdict("fail", isolated.first_divergence, isolated.first_check, None, isolated.causes)
            context["causes"] = verdict.causes
    if "native" in checks:
        context["port_ops_both"] = _port_ops_both(main_checks, checks["native"], error)
    if "isolated" in checks:
        context["isolated"] = {
            "verdict": decide(checks["isolated"], isolated=True).verdict,
            "components": components.table(checks["isolated"], case.cfg_enabled),
            "checks": [c.row() for c in checks["isolated"]] if mode == "both" else "see checks",
        }
    notes = [f"expected to fail: {case.reason}"] if case.expected_for() == "fail" else []
    context["timings_s"] = timings
    context["gpu_peak_mib"] = gpu_peak_mib or None
    context["device_numerics"] = fixed_numerics or None
    context["notes"] = notes + [n for info in infos.values() for n in info.notes]
    progress.say(f"writing report to {out_dir}")
    doc = write(out_dir, verdict, main_checks, context)
    return verdict, doc
