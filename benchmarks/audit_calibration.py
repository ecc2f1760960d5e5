"""The float64 audit (`parity run --audit fp64`) on every bundled CPU case: its flags (clean runs must
have none), the largest float64 difference per component kind, and its cost against a plain run.

    python benchmarks/audit_calibration.py [--out reports/audit] [--dtype float32] [--plugin P ...] [CASE ...]

Each case runs in its own process (`parity run CASE --audit fp64`); writes <out>/<case>-<dtype>/ and
<out>/calibration.md. The numbers set parity.audit.THRESHOLD (docs/tolerances.md, "The float64 audit").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from parity import cases
from parity.files import write_atomic

KINDS = ("embedders", "block", "dit_call")


def audit_one(name: str, dtype: str, out: Path, plugins: list[str] = ()) -> dict:
    command = [
        sys.executable,
        "-m",
        "parity",
        "run",
        name,
        "--dtype",
        dtype,
        "--audit",
        "fp64",
        "-q",
        "--out",
        str(out),
        *[flag for plugin in plugins for flag in ("--plugin", plugin)],
    ]
    t0 = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    doc = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    audit = doc.get("audit") or {}
    largest = audit.get("largest_by_kind", {})
    return {
        "case": name + "".join(f" + {Path(p).name}" for p in plugins),
        "dtype": dtype,
        "verdict": doc.get("verdict", "error"),
        "components": audit.get("components", 0),
        "flagged": len(audit.get("flagged", [])),
        "skipped": audit.get("skipped", ""),
        **{kind: largest.get(kind, {}).get("rel_l2") for kind in KINDS},
        "audit_s": audit.get("seconds"),
        "plain_s": audit.get("plain_run_seconds"),
        "total_s": round(seconds, 1),
    }


def table(rows: list[dict]) -> str:
    head = "| case | dtype | verdict | components | flagged | largest: embedders | blocks | DiT call | audit s | "
    head += "plain run s |\n"
    head += "|---|---|---|---|---|---|---|---|---|---|\n"

    def num(x: float | None) -> str:
        return "–" if x is None else f"{x:.2g}"

    body = "".join(
        f"| {r['case']} | {r['dtype']} | {r['verdict']} | {r['components']} | {r['flagged']}"
        f"{' (' + r['skipped'] + ')' if r['skipped'] else ''} | {num(r['embedders'])} | {num(r['block'])} | "
        f"{num(r['dit_call'])} | {r['audit_s']} | {r['plain_s']} |\n"
        for r in rows
    )
    return head + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="cases (default: every bundled CPU case without ranks)")
    parser.add_argument("--out", type=Path, default=Path("reports/audit"))
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--plugin", action="append", default=[], help="a fault plugin every run loads (repeatable)")
    args = parser.parse_args()
    known = cases.bundled()
    names = args.names or [n for n, c in known.items() if c.device == "cpu" and c.degrees.world_size == 1]
    rows = []
    for name in names:
        tag = "".join(f"-{Path(p).stem}" for p in args.plugin)
        row = audit_one(name, args.dtype, args.out / f"{name}-{args.dtype}{tag}", args.plugin)
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_atomic(args.out / ("calibration.md" if not args.plugin else "calibration-plugins.md"), table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
