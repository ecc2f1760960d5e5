"""What the harness costs beyond the two pipelines: `python -m parity.bench --overhead`.

On one machine, in one process, with both pipelines loaded once and warmed up, for each step count:
Diffusers alone, SGLang alone (no taps), the full harness with the default block-capture policy and
with every block of every step, as wall time; the overhead ratio harness / (Diffusers + SGLang);
peak device memory of each side (CUDA) and the process's peak host memory so far. Step counts run
in increasing order, so a flat host-memory column means memory does not grow with the step count.
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from parity import families
from parity.capture import BlockCapture
from parity.cases import Case
from parity.runners import runner_for
from parity.session import model_dir_for, run_case
from parity.vocab import Side


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(device: str, fn: Callable[[], Any], repeats: int) -> tuple[float, Any, float]:
    """Median wall time of `repeats` calls (after the caller's warm-up), the last result, and the peak
    GPU memory the calls allocated above what was resident before them (NaN off the GPU)."""
    times, result = [], None
    resident = _resident_mib(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 - resident if device == "cuda" else float("nan")
    return sorted(times)[len(times) // 2], result, peak


def _resident_mib(device: str) -> float:
    if device != "cuda":
        return float("nan")
    gc.collect()  # traces of earlier runs may sit in reference cycles until a collection
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated() / 2**20


def _weights_mib(modules: Any) -> float:
    seen, total = set(), 0
    for module in modules:
        if isinstance(module, torch.nn.Module):
            for t in list(module.parameters()) + list(module.buffers()):
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
    return total / 2**20


def _host_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def table(case: Case, steps: list[int], repeats: int = 3, out: Path | None = None) -> list[dict[str, Any]]:
    """One row per step count; `out`: keep each harness run's report there (`<case>-<steps>-default`,
    `<case>-<steps>-all`), e.g. for `python -m parity.margins`."""
    model_dir = model_dir_for(case, {})
    adapter = families.get(case.family) if case.family else families.detect(model_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(steps):
            rows.append(_row(dataclasses.replace(case, steps=n), model_dir, adapter, out or Path(tmp), repeats))
            print(_format_row(rows[-1]), flush=True)
    return rows


def _row(case: Case, model_dir: Path, adapter: Any, out: Path, repeats: int) -> dict[str, Any]:
    reference, port = runner_for(Side.REFERENCE), runner_for(Side.PORT)
    n, device = case.steps, case.device

    def diffusers() -> Any:
        return reference.bare(model_dir, case, adapter)

    def sglang() -> Any:
        return port.bare(model_dir, case, adapter)

    def default() -> Any:
        return run_case(case, out / f"{case.name}-{n}-default", capture=BlockCapture())

    def every() -> Any:  # compared step by step as it runs (parity.online)
        return run_case(case, out / f"{case.name}-{n}-all", capture=BlockCapture.parse("all"))

    for warm_up in (diffusers, sglang, default):  # loads, lazy initialisation, autotuning
        warm_up()
    weights_d = _weights_mib(reference.load(model_dir, case, adapter).components.values())
    weights_s = _weights_mib(port.load(model_dir, case, adapter).pipe.modules.values())
    d_s, _, d_peak = _timed(device, diffusers, repeats)
    s_s, _, s_peak = _timed(device, sglang, repeats)
    h_s, report, _ = _timed(device, default, repeats)
    a_s, report_all, a_peak = _timed(device, every, 1)
    online = report_all.capture.get("online", {})
    return {
        "steps": n,
        "diffusers_s": d_s,
        "sglang_s": s_s,
        "harness_default_s": h_s,
        "harness_all_blocks_s": a_s,
        "overhead_default": h_s / (d_s + s_s),
        "overhead_all_blocks": a_s / (d_s + s_s),
        "weights_diffusers_mib": weights_d,
        "weights_sglang_mib": weights_s,
        "device_peak_diffusers_mib": d_peak,
        "device_peak_sglang_mib": s_peak,
        "device_peak_harness_all_mib": a_peak,
        "records_all_mib": online.get("records_peak_mib", float("nan")),
        "host_peak_mib": _host_peak_mib(),
        "verdict": f"{report.verdict.outcome}/{report_all.verdict.outcome}",
        "checks": f"{report.summary['checks']}/{report_all.summary['checks']}",
    }


HEADER = (
    f"{'steps':>5} {'Diffusers s':>11} {'SGLang s':>9} {'harness s':>9} {'all-blocks s':>12} "
    f"{'ratio':>6} {'ratio all':>9} {'GPU MiB D':>15} {'GPU MiB S':>15} {'GPU MiB all':>11} "
    f"{'records MiB':>11} {'host MiB':>9}  verdict, checks (default/all)"
)


def _format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['steps']:>5} {r['diffusers_s']:>11.3f} {r['sglang_s']:>9.3f} {r['harness_default_s']:>9.3f} "
        f"{r['harness_all_blocks_s']:>12.3f} {r['overhead_default']:>6.2f} {r['overhead_all_blocks']:>9.2f} "
        f"{_gpu(r['weights_diffusers_mib'], r['device_peak_diffusers_mib']):>15} "
        f"{_gpu(r['weights_sglang_mib'], r['device_peak_sglang_mib']):>15} "
        f"{_mib(r['device_peak_harness_all_mib']):>11} {_mib(r['records_all_mib']):>11} "
        f"{r['host_peak_mib']:>9.0f}  {r['verdict']}, {r['checks']}"
    )


def _mib(value: float) -> str:
    return "-" if value != value else f"{value:.0f}"  # NaN off the GPU


def _gpu(weights: float, run: float) -> str:
    return "-" if run != run else f"{weights:.0f}+{run:.0f}"  # NaN off the GPU


def profile(case: Case, top: int = 30) -> None:
    """Where one warm harness run spends its time: cProfile of `run_case`, parity's own functions."""
    import cProfile
    import io
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        run_case(case, Path(tmp) / "warm-up")
        profiler = cProfile.Profile()
        profiler.enable()
        run_case(case, Path(tmp) / "profiled")
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"parity/", top)
    print(out.getvalue())


def main(case: Case, steps: list[int], repeats: int, with_profile: bool = False, out: Path | None = None) -> int:
    print(
        f"parity bench --overhead: {case.name} [{case.dtype}, {case.device}, port ops {case.port_ops}] on "
        f"{device_name(case.device)}; torch {torch.__version__}; median of {repeats} after warm-up "
        "(all-blocks: one run)"
    )
    print(
        "ratio = harness / (Diffusers alone + SGLang alone); GPU MiB D/S = that side's weights + the peak its "
        "run allocates above what is resident; GPU MiB all = the all-blocks harness run's peak above resident, "
        "records MiB = the most record memory it held at once, on the GPU (compared step by step, "
        "parity.online); host MiB = the process's peak RSS so far"
    )
    print(HEADER, flush=True)
    table(case, steps, repeats, out)
    if with_profile:
        print(f"\nprofile of one warm harness run at {case.steps} steps (parity's functions, cumulative):")
        profile(case)
    return 0
