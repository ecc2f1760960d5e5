"""Run every bundled case (each dtype in its own process, full and isolated mode by default) and
check each against its expectation.

`python -m parity.suite [--dtype D ...]`: what `nox -s parity` runs. A case that fails when it is
expected to pass, passes when it is marked as an expected failure, or errors, fails the suite.
Writes reports/<case>-<dtype>/ for each run and reports/summary.md.
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
from parity.vocab import Mode


def run_one(case: cases.Case, dtype: str, out: Path, mode: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "parity", "run", case.name, "--dtype", dtype, "--mode", mode, "--out", str(out)],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    report = out / "report.json"
    doc = json.loads(report.read_text()) if report.is_file() else {}
    verdict = doc.get("verdict", "error")
    first = doc.get("first_divergence") or {}
    found_at = f"{first.get('stage')}/{first.get('tensor')}" if first else None
    pinned = case.expected_divergence_for(dtype)
    ok = verdict == case.expected_for(dtype) and (pinned is None or found_at == pinned)
    if not ok:
        sys.stderr.write(proc.stderr[-4000:])
    return {
        "case": case.name,
        "dtype": dtype,
        "verdict": verdict,
        "expected": case.expected_for(dtype) + (f" at {pinned}" if pinned else ""),
        "ok": ok,
        "first_divergence": doc.get("first_divergence"),
        "seconds": round(seconds, 1),
        "line": proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else proc.stderr.strip()[-300:],
    }


def plan(case: cases.Case, dtypes: list[str], cuda: bool) -> tuple[list[str], str | None]:
    """The dtypes to run a bundled case in, or why it is skipped here: a GPU case (real widths,
    device cuda) runs in its own dtype, and only on a machine with a GPU."""
    if case.device != "cuda":
        return list(dtypes), None
    if not cuda:
        return [], "device cuda; this machine has no GPU"
    return [case.dtype], None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.suite")
    parser.add_argument("--dtype", action="append", choices=cases.DTYPES, help="default: every dtype")
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.BOTH.value)
    args = parser.parse_args(argv)
    rows = []
    skipped = []
    for case in cases.bundled().values():
        dtypes, why_not = plan(case, args.dtype or list(cases.DTYPES), _cuda_available())
        if why_not:
            skipped.append(f"{case.name} ({why_not})")
            print(f"== {case.name}: skipped ({why_not})", flush=True)
            continue
        for dtype in dtypes:
            print(f"== {case.name} [{dtype}] ...", flush=True)
            row = run_one(case, dtype, args.reports / f"{case.name}-{dtype}", args.mode)
            mark = "ok" if row["ok"] else "UNEXPECTED"
            print(f"   {row['line']}\n   -> {mark} (expected {row['expected']}, {row['seconds']} s)", flush=True)
            rows.append(row)
    lines = ["| case | dtype | verdict | expected | first divergence | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        fd = r["first_divergence"]
        where = "" if not fd else ", ".join(f"{k}={v}" for k, v in fd.items() if v is not None)
        lines.append(f"| {r['case']} | {r['dtype']} | {r['verdict']} | {r['expected']} | {where} | {r['seconds']} |")
    table = "\n".join(lines) + "\n" + "".join(f"\nskipped: {s}" for s in skipped)
    write_atomic(args.reports / "summary.md", "# Bundled cases\n\n" + table)
    print("\n" + table)
    bad = [r for r in rows if not r["ok"]]
    if bad:
        print(f"{len(bad)} of {len(rows)} runs did not meet their expectation", file=sys.stderr)
        return 1
    print(f"all {len(rows)} runs met their expectation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
