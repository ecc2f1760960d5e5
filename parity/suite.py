"""Run the bundled cases (each dtype in its own process, full and isolated mode by default) and
check each against its expectation.

`python -m parity.suite [--dtype D ...] [--all]`: what `nox -s parity` runs. By default, the
representative set that fits the CI budget on a 2-core CPU: every case whose `[suite]` table does
not say `default = false`, and the multi-rank runs its `parallel` list names (the port in ranks,
fp32, full mode; the one-rank comparison must pass as well); `--all` adds the other cases and the
`parallel_all` runs. A run that fails when it is expected to pass, passes when it is marked as an
expected failure, or errors, fails the suite. Writes reports/<case>-<dtype>[-<degrees>]/ for each
run, reports/summary.md, and reports/junit.xml (one testcase per run, one skipped testcase per
case it skips; parity.junit).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from parity import cases, junit, sensitivity_cache
from parity.files import write_atomic
from parity.vocab import Mode


def run_one(case: cases.Case, dtype: str, out: Path, mode: str, degrees: str | None = None) -> dict:
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "parity", "run", case.name, "--dtype", dtype, "--mode", mode, "--out", str(out)]
    if degrees is not None:
        command += ["--port-parallel", degrees]
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    report = out / "report.json"
    doc = json.loads(report.read_text()) if report.is_file() else {}
    verdict = doc.get("verdict", "error")
    first = doc.get("first_divergence") or {}
    found_at = f"{first.get('stage')}/{first.get('tensor')}" if first else None
    pinned = case.expected_divergence_for(dtype)
    ok = verdict == case.expected_for(dtype) and (pinned is None or found_at == pinned)
    miss = None
    if degrees is not None:  # the ranks against the reference as at one rank, and against the one-rank port
        one_rank = (doc.get("parallel") or {}).get("vs_one_rank", {})
        ok = ok and one_rank.get("verdict") == "pass"
        where = junit.where(one_rank.get("first_divergence"))
        miss = f"the ranks against the port at one rank: {one_rank.get('verdict', 'not compared')}" + (
            f", first divergence: {where}" if where else ""
        )
    if not ok:
        sys.stderr.write(proc.stderr[-4000:])
    line = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else proc.stderr.strip()[-300:]
    return {
        "case": case.name + (f" @ {degrees}" if degrees else ""),
        "dtype": dtype,
        "verdict": verdict,
        "expected": case.expected_for(dtype) + (f" at {pinned}" if pinned else ""),
        "ok": ok,
        "first_divergence": doc.get("first_divergence"),
        "seconds": round(seconds, 1),
        "line": line,
        # for reports/junit.xml (junit_testcases)
        "name": case.name,
        "mode": mode,
        "degrees": degrees,
        "expected_verdict": case.expected_for(dtype),
        "pinned": pinned,
        "reason": case.reason,
        "miss": miss,
        "message": junit.first_message(doc),
        "hints": doc.get("hints") or [],
        "error": doc.get("error") or (None if doc else line),
        "report": str(out / "report.md"),
    }


def junit_testcases(rows: list[dict[str, Any]], skipped: list[dict[str, str]]) -> list[Element]:
    """reports/junit.xml's testcases: one per row (a run; failed or errored exactly when the row is
    not `ok`), then one skipped testcase per skipped case."""
    found = []
    for row in rows:
        expected = junit.Expectation(
            verdict=row["expected_verdict"], met=row["ok"], at=row["pinned"], reason=row["reason"], miss=row["miss"]
        )
        run = junit.Run(
            case=row["name"],
            dtype=row["dtype"],
            mode=row["mode"],
            degrees=row["degrees"],
            verdict=row["verdict"],
            first=row["first_divergence"],
            message=row["message"],
            hints=tuple(row["hints"]),
            error=row["error"],
            report=row["report"],
            seconds=row["seconds"],
            expected=expected,
        )
        found.append(junit.testcase(run))
    return found + [junit.skipped(s["case"], s["name"], s["why"]) for s in skipped]


def kept_sensitivity(rows: list[dict[str, Any]], root: Path) -> list[str]:
    """The summary line of each sensitivity table kept (`parity sensitivity`) for a case and dtype the suite
    ran, marked stale when its key no longer holds: shown, never re-run here (it costs dozens of port runs)."""
    found, known = [], cases.bundled()
    for name, dtype in dict.fromkeys((r["name"], r["dtype"]) for r in rows if r["degrees"] is None):
        case = known[name].with_overrides(dtype=dtype)
        line = sensitivity_cache.summary(case, root, cases.cases_dir() / f"{name}.toml")
        if line is not None:
            found.append(f"- {name}: {line}")
    return found


def write_junit(path: Path, rows: list[dict[str, Any]], skipped: list[dict[str, str]]) -> None:
    junit.write(path, "parity.suite", junit_testcases(rows, skipped))


def plan(case: cases.Case, dtypes: list[str], cuda: bool, everything: bool = False) -> tuple[list[str], str | None]:
    """The dtypes to run a bundled case in, or why it is skipped here: a GPU case (real widths,
    device cuda) runs in its own dtype, and only on a machine with a GPU; a case left out of the
    default set runs with --all only."""
    if not everything and not case.suite.get("default", True):
        return [], "not in the default set; nox -s parity -- --all runs it"
    if case.degrees.parallel:  # a multi-rank case: fp32, full mode (as the `parallel` runs)
        return [d for d in dtypes if d == "float32"], None if "float32" in dtypes else "a multi-rank case runs in fp32"
    if case.device != "cuda":
        return list(dtypes), None
    if not cuda:
        return [], "device cuda; this machine has no GPU"
    return [case.dtype], None


def parallel_runs(case: cases.Case, everything: bool = False) -> list[str]:
    """The port degrees the suite runs the case at besides one rank (fp32, full mode)."""
    runs = list(case.suite.get("parallel", []))
    return runs + list(case.suite.get("parallel_all", [])) if everything else runs


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.suite")
    parser.add_argument("--dtype", action="append", choices=cases.DTYPES, help="default: every dtype")
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.BOTH.value)
    parser.add_argument("--all", action="store_true", help="every case and multi-rank run, not only the default set")
    args = parser.parse_args(argv)
    rows = []
    skipped: list[dict[str, str]] = []
    for case in cases.bundled().values():
        dtypes, why_not = plan(case, args.dtype or list(cases.DTYPES), _cuda_available(), args.all)
        if why_not:
            mode = Mode.FULL.value if case.degrees.parallel else args.mode
            skipped.append({"case": case.name, "name": junit.testcase_name(case.dtype, mode), "why": why_not})
            print(f"== {case.name}: skipped ({why_not})", flush=True)
            continue
        runs: list[tuple[str, str, str | None]] = [
            (dtype, Mode.FULL.value if case.degrees.parallel else args.mode, None) for dtype in dtypes
        ]
        if "float32" in dtypes:
            runs += [("float32", Mode.FULL.value, degrees) for degrees in parallel_runs(case, args.all)]
        for dtype, mode, degrees in runs:
            label = f"{case.name} [{dtype}{', ' + degrees if degrees else ''}]"
            print(f"== {label} ...", flush=True)
            out = args.reports / (
                f"{case.name}-{dtype}" + (f"-{degrees.replace('=', '').replace(',', '-')}" if degrees else "")
            )
            row = run_one(case, dtype, out, mode, degrees)
            mark = "ok" if row["ok"] else "UNEXPECTED"
            print(f"   {row['line']}\n   -> {mark} (expected {row['expected']}, {row['seconds']} s)", flush=True)
            rows.append(row)
    lines = ["| case | dtype | verdict | expected | first divergence | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        fd = r["first_divergence"]
        where = "" if not fd else ", ".join(f"{k}={v}" for k, v in fd.items() if v is not None)
        lines.append(f"| {r['case']} | {r['dtype']} | {r['verdict']} | {r['expected']} | {where} | {r['seconds']} |")
    table = "\n".join(lines) + "\n" + "".join(f"\nskipped: {s['case']} ({s['why']})" for s in skipped)
    kept = kept_sensitivity(rows, args.reports / "sensitivity")
    if kept:  # what each pass is worth, from the kept tables (parity sensitivity)
        title = "## Sensitivity (kept tables of `parity sensitivity`, not re-run by the suite)"
        table += f"\n\n{title}\n\n" + "\n".join(kept)
    write_atomic(args.reports / "summary.md", "# Bundled cases\n\n" + table)
    write_junit(args.reports / "junit.xml", rows, skipped)
    print("\n" + table)
    bad = [r for r in rows if not r["ok"]]
    if bad:
        print(f"{len(bad)} of {len(rows)} runs did not meet their expectation", file=sys.stderr)
        return 1
    print(f"all {len(rows)} runs met their expectation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
