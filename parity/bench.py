"""Benchmarks: where the time of one `parity run` goes, and peak host memory against step count.

`python -m parity.bench [case] [--dtype D]` prints import, fixture build (into a fresh cache),
the reference run, the port run and the comparison+report, in seconds.
`python -m parity.bench [case] --overhead [--device cuda] [--steps 4 28 50] [--height H --width W]
[--profile]`: the harness's cost beyond the two pipelines (parity.overhead).
`python -m parity.bench [case] --memory [--steps 4 32]` runs `parity run` once per step count in
a child process and prints its peak RSS and the bytes the traces hold (per-step tensors, blocks).
Numbers only; nothing is asserted. The import row is only meaningful in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_memory(case: str, steps: list[int], dtype: str | None) -> int:
    """Peak RSS of one `parity run` per step count (default block-capture policy)."""
    print(f"parity bench --memory: {case}, default block-capture policy, {os.cpu_count()} CPUs")
    header = ("steps", "peak RSS MiB", "trace MiB", "of it blocks MiB", "checks", "seconds")
    print("  " + " ".join(f"{h:>{w}}" for h, w in zip(header, (5, 13, 10, 17, 7, 8), strict=True)))
    for n in steps:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "parity", "run", case, "--steps", str(n), "--out", tmp]
            command += ["--dtype", dtype] if dtype else []
            t0 = time.perf_counter()
            child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - t0
            doc = json.loads((Path(tmp) / "report.json").read_text())
        held = doc["trace_bytes"]
        total = sum(held[side]["total"] for side in held) / 2**20
        blocks = sum(held[side]["blocks"] for side in held) / 2**20
        print(
            f"  {n:>5} {usage.ru_maxrss / 1024:>13.1f} {total:>10.2f} {blocks:>17.2f} "
            f"{doc['summary']['checks']:>7} {seconds:>8.1f}   verdict {doc['verdict']}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.bench")
    parser.add_argument("case", nargs="?", default="flux-tiny")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--memory", action="store_true", help="peak host memory against the step count")
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="Diffusers alone, SGLang alone and the full harness (default policy, every block) after warm-up, "
        "with the overhead ratio and peak device/host memory, per step count",
    )
    parser.add_argument("--steps", type=int, nargs="+", help="step counts (default: 4 32; --overhead: 4 28 50)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--height", type=int, default=None, help="with --overhead: image height (default: the case's)")
    parser.add_argument("--width", type=int, default=None, help="with --overhead: image width (default: the case's)")
    parser.add_argument("--port-ops", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="with --overhead: profile one warm harness run")
    parser.add_argument("--out", type=Path, default=None, help="with --overhead: keep each harness run's report here")
    args = parser.parse_args(argv)
    if args.memory:
        return peak_memory(args.case, args.steps or [4, 32], args.dtype)
    if args.overhead:
        from parity import cases, overhead

        case = cases.resolve(args.case).with_overrides(
            dtype=args.dtype, device=args.device, port_ops=args.port_ops, height=args.height, width=args.width
        )
        return overhead.main(case, args.steps or [4, 28, 50], args.repeats, args.profile, args.out)

    t0 = time.perf_counter()
    import diffusers  # noqa: F401
    import sglang.multimodal_gen.runtime.pipelines_core  # noqa: F401
    import torch  # noqa: F401

    from parity import cases, fixture_cache
    from parity.session import run_case

    import_s = time.perf_counter() - t0
    case = cases.resolve(args.case).with_overrides(dtype=args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PARITY_CACHE_DIR"] = str(Path(tmp) / "cache")  # force a real fixture build
        if case.fixture:
            t0 = time.perf_counter()
            fixture_cache.ensure(case.fixture)
            build_s = time.perf_counter() - t0
        else:
            build_s = float("nan")
        t0 = time.perf_counter()
        report = run_case(case, Path(tmp) / "report")
        total_s = time.perf_counter() - t0
    t = report.timings_s
    rows = [
        ("import torch + diffusers + sglang", import_s),
        ("fixture build (fresh cache)", build_s),
        ("reference: Diffusers load + run", t.get("reference", float("nan"))),
        ("port: SGLang load + run", t.get("port", float("nan"))),
        ("compare", t.get("compare", float("nan"))),
        ("whole run_case (incl. cached fixture, report)", total_s),
    ]
    print(
        f"parity bench: {case.name} [{case.dtype}, {case.device}], verdict {report.verdict.outcome}, "
        f"{os.cpu_count()} CPUs, torch {report.versions['torch']}"
    )
    for name, seconds in rows:
        print(f"  {name:<48} {seconds:8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
