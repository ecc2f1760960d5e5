"""Flux at its real depth on one GPU (the `flux-full` case: 19 + 38 blocks, 1024x1024, bf16, native ops):
what the capture policy changes, and what the harness costs.

    python benchmarks/flux_full_gpu.py OUT [--steps 10 28 50] [--skip-study]

1. The study (10 steps, every block of every step): the block limits of a 12-block DiT at every depth
   (tests/cases/flux-full-flat-blocks.toml) with `--referee fp64`; the same with SGLang rounding its
   timestep the way Diffusers does (tests/plugins/confirm_flux_timestep_bf16.py); and the block error
   profile along the depth at every step (OUT/profiles.json).
2. The table (parity.overhead): bare runs, the harness with the default policy and with every block,
   per step count, with the default (depth-following) limits.
Reports are kept in OUT/reports/ and packed into OUT/reports.tar.gz (report.json and report.md only).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from parity import cases, fixture_cache, overhead  # noqa: E402
from parity.capture import BlockCapture  # noqa: E402
from parity.session import run_case  # noqa: E402


def say(message: str) -> None:
    print(f"[flux-full] {message}", flush=True)


def summary(name: str, out: Path, seconds: float) -> dict:
    doc = json.loads((out / "report.json").read_text())
    checks = doc["checks"]
    failing = [c for c in checks if not c["passed"]]
    steps = sorted({c["step"] for c in failing if c["step"] is not None})
    say(
        f"{name}: {doc['verdict']} ({doc['summary']['passed']}/{doc['summary']['checks']}) in {seconds:.1f} s; "
        f"first {doc['first_divergence']}; failing steps {steps}; capture {doc['capture'].get('online')}; "
        f"gpu peak {doc.get('gpu_peak_mib')}"
    )
    for hint in doc.get("hints", []):
        say(f"  hint at {hint['at']}: {hint['symptom']} -> {hint['likely_cause']}")
    if doc.get("referee"):
        say(f"  referee: {doc['referee']}")
    frames = [c for c in checks if c["tensor"] == "frames_similarity"]
    if frames:
        say(f"  frames: {frames[0].get('message') or frames[0].get('tolerance')}")
    worst: dict[str, float] = {}
    for c in checks:
        kind = "block" if c["block"] else c["tensor"]
        if c.get("rel_l2") is not None:
            worst[kind] = max(worst.get(kind, 0.0), c["rel_l2"])
    say(f"  worst rel_l2 by tensor: {json.dumps({k: round(v, 5) for k, v in sorted(worst.items())})}")
    return doc


def profile(doc: dict) -> dict:
    """Per step: each block output's rel_l2 and smallest passing atol, in execution order."""
    by_step: dict[int, list] = {}
    for c in doc["checks"]:
        if c["block"] and c["step"] is not None and ":input" not in c["block"] and c["block"] != "embedders":
            by_step.setdefault(c["step"], []).append([c["block"], c["tensor"], c["rel_l2"], c["min_atol"]])
    return by_step


def timed(name: str, out: Path, case: cases.Case, **kwargs) -> dict:
    t0 = time.perf_counter()
    run_case(case, out, **kwargs)
    return summary(name, out, time.perf_counter() - t0)


def study(out: Path, profiles: dict, case_name: str, flat_file: Path) -> None:
    flat = cases.resolve(str(flat_file))
    every = BlockCapture.parse("all")
    doc = timed(
        "flat limits, every block, --referee fp64", out / "flat-10-all", case=flat, capture=every, referee_mode="fp64"
    )
    profiles["flat-10-all"] = profile(doc)
    timed("flat limits, default policy", out / "flat-10-default", case=flat)
    # SGLang's Flux DiT rounding its timestep like Diffusers': a plugin patching SGLang's class, undone after.
    from sglang.multimodal_gen.runtime.models.dits.flux import FluxTransformer2DModel

    original = FluxTransformer2DModel.forward
    path = ROOT / "tests" / "plugins" / "confirm_flux_timestep_bf16.py"
    spec = importlib.util.spec_from_file_location("confirm_flux_timestep_bf16", path)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    try:
        doc = timed(
            "flat limits, every block, SGLang rounding its timestep like Diffusers",
            out / "flat-10-all-rounded",
            case=flat,
            capture=every,
            plugins=[path.name],
        )
        profiles["flat-10-all-rounded"] = profile(doc)
    finally:
        FluxTransformer2DModel.forward = original
    depth = dataclasses.replace(cases.resolve(case_name), steps=flat.steps)
    doc = timed("depth limits, every block", out / "depth-10-all", case=depth, capture=every)
    profiles["depth-10-all"] = profile(doc)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 28, 50])
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--case", default="flux-full", help="another case for a smoke test (e.g. flux-tiny)")
    parser.add_argument("--flat", type=Path, default=ROOT / "tests" / "cases" / "flux-full-flat-blocks.toml")
    args = parser.parse_args()
    reports = args.out / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path, built = fixture_cache.ensure(str(cases.resolve(args.case).fixture))
    say(f"fixture {'built' if built else 'cached'} at {path} in {time.perf_counter() - t0:.1f} s")
    profiles: dict = {}
    try:
        if not args.skip_study:
            study(reports, profiles, args.case, args.flat)
        overhead.main(cases.resolve(args.case), args.steps, 1, out=reports)
    finally:
        (args.out / "profiles.json").write_text(json.dumps(profiles))
        pack(reports, args.out / "reports.tar.gz")
    return 0


def pack(reports: Path, tar_path: Path) -> None:
    """Each report's report.json and report.md in one archive (a GPU machine hands back few files)."""
    with tarfile.open(tar_path, "w:gz") as tar:
        for report in sorted(reports.glob("*/report.*")):
            if report.suffix in (".json", ".md"):
                tar.add(report, arcname=f"{report.parent.name}/{report.name}")


if __name__ == "__main__":
    sys.exit(main())
