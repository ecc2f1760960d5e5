"""How close clean runs come to each tolerance: `python -m parity.margins REPORT_DIR...`.

Reads report.json files and prints, per tolerance kind, the largest atol any check needed (at the
kind's rtol) and the largest rel_l2, beside the limits the run used. This is how the default
tolerances were calibrated (docs/tolerances.md): from clean runs, with a margin, per device and dtype.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from parity.tolerance import kind_of


def summarise(reports: list[Path]) -> list[dict]:
    worst: dict[tuple[str, str, str], dict] = defaultdict(lambda: {"checks": 0, "min_atol": 0.0, "rel_l2": 0.0})
    for path in reports:
        doc = json.loads((path / "report.json" if path.is_dir() else path).read_text())
        case = doc.get("case", {})
        for check in doc.get("checks", []):
            if check.get("min_atol") is None or check.get("atol") is None:
                continue  # exact kinds and frame rules have no atol to calibrate
            key = (case.get("device", "?"), case.get("dtype", "?"), kind_of(check["stage"], check["tensor"]))
            row = worst[key]
            row["checks"] += 1
            row["atol_limit"], row["rel_l2_limit"] = check["atol"], check.get("max_rel_l2")
            if check["min_atol"] >= row["min_atol"]:
                row["min_atol"], row["worst_atol_at"] = check["min_atol"], _where(check)
            if (check.get("rel_l2") or 0.0) >= row["rel_l2"]:
                row["rel_l2"], row["worst_rel_l2_at"] = check["rel_l2"], _where(check)
    return [{"device": d, "dtype": t, "kind": k, **row} for (d, t, k), row in sorted(worst.items())]


def _where(check: dict) -> str:
    parts = [check["tensor"]] + [f"{k}={check[k]}" for k in ("step", "block") if check.get(k) is not None]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print("usage: python -m parity.margins REPORT_DIR_OR_JSON...", file=sys.stderr)
        return 2
    for row in summarise(paths):
        limit = row["rel_l2_limit"]
        print(
            f"{row['device']:<5} {row['dtype']:<9} {row['kind']:<16} n={row['checks']:<4} "
            f"atol needed {row['min_atol']:.3g} (limit {row['atol_limit']:.3g}, at {row.get('worst_atol_at')}); "
            f"rel_l2 {row['rel_l2']:.3g} (limit {'-' if limit is None else f'{limit:.3g}'}, "
            f"at {row.get('worst_rel_l2_at')})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
