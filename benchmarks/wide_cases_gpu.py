"""The GPU cases at real width (qwen-image-wide, wan-t2v-wide, sd3-wide, zimage-wide, flux-wide), on one GPU:

    python benchmarks/wide_cases_gpu.py OUT [--cases ...]

Per case: the overhead table at the case's own steps (bare Diffusers and SGLang, the harness with the
default policy and with every block, GPU and host memory; reports kept in OUT/reports), the worst clean
error per tensor kind against its limit, and the SGLang kernels that still ran under `--port-ops
native` without parity's torch twins (SGLang's gates and request quality still set) and with them.
Summary in OUT/cases.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flux_full_gpu import pack  # noqa: E402  (beside this script)

from parity import cases, overhead  # noqa: E402
from parity.runners import native_twins  # noqa: E402
from parity.session import run_case  # noqa: E402
from parity.tolerance import kind_of  # noqa: E402

CASES = ["qwen-image-wide", "sd3-wide", "zimage-wide", "wan-t2v-wide", "flux-wide"]


def worst_by_kind(doc: dict) -> dict[str, dict]:
    """Per tolerance kind: the largest rel_l2 and smallest passing atol any check needed, with the limits."""
    found: dict[str, dict] = {}
    for c in doc["checks"]:
        if c.get("rel_l2") is None or c["tolerance"] == "exact":
            continue
        kind = "block_output" if c["block"] else kind_of(c["stage"], c["tensor"])
        row = found.setdefault(kind, {"rel_l2": 0.0, "min_atol": 0.0, "limit": c["tolerance"]})
        rel_l2, min_atol = float(c["rel_l2"]), float(c.get("min_atol") or 0.0)  # report.json writes inf as "inf"
        if math.isfinite(rel_l2):
            row["rel_l2"] = max(row["rel_l2"], rel_l2)
        if math.isfinite(min_atol):
            row["min_atol"] = max(row["min_atol"], min_atol)
    return found


def without_twins(case: cases.Case, out: Path) -> dict:
    """The port's native run with parity's twins taken away: what SGLang alone leaves running."""
    saved = dict(native_twins.TWINS), dict(native_twins.ATTRIBUTE_TWINS)
    native_twins.TWINS.clear()
    native_twins.ATTRIBUTE_TWINS.clear()
    try:
        run_case(dataclasses.replace(case, steps=2), out)
    finally:
        native_twins.TWINS.update(saved[0])
        native_twins.ATTRIBUTE_TWINS.update(saved[1])
    return json.loads((out / "report.json").read_text())["port_ops"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--cases", nargs="+", default=CASES)
    args = parser.parse_args()
    reports = args.out / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    summary = {}
    try:
        for name in args.cases:
            case = cases.resolve(name)
            try:
                [row] = overhead.table(case, [case.steps], repeats=1, out=reports)
                default = json.loads((reports / f"{name}-{case.steps}-default" / "report.json").read_text())
                bare_twins = without_twins(case, reports / f"{name}-without-twins")
                summary[name] = {
                    "row": row,
                    "verdict": default["verdict"],
                    "first_divergence": default["first_divergence"],
                    "checks": default["summary"],
                    "frames_relative": (default.get("noise") or {}).get("relative"),  # SSIM, PSNR per frame
                    "worst_by_kind": worst_by_kind(default),
                    "kernels_without_parity_twins": {
                        "summary": bare_twins.get("summary"),
                        "ran": bare_twins.get("kernels_ran"),
                    },
                    "kernels": {
                        "summary": default["port_ops"].get("summary"),
                        "ran": default["port_ops"].get("kernels_ran"),
                    },
                    "hints": default.get("hints"),
                }
            except Exception as exc:  # one case's failure must not lose the others' numbers
                summary[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"[wide] {name}: {json.dumps(summary[name], default=str)[:3000]}", flush=True)
    finally:
        (args.out / "cases.json").write_text(json.dumps(summary, indent=1, default=str))
        pack(reports, args.out / "wide-reports.tar.gz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
