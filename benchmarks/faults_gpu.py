"""Every fault plugin of tests/test_pipeline_parity.py (FAULTS) on a GPU: each one must fail its case with
the same first divergence as on the CPU (`--device cuda`, the case's dtype, fp32 for flux-tiny).

    python benchmarks/faults_gpu.py OUT [--jobs 4] [--cases flux-tiny ...]

Each run is its own process (a plugin patches SGLang for the whole process); a few run at once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_pipeline_parity import FAULTS, PLUGINS  # noqa: E402


def run(out: Path, plugin: str | tuple[str, ...], case: str, where: tuple) -> dict:
    plugins = (plugin,) if isinstance(plugin, str) else plugin  # a row may stack plugins, loaded in order
    report = out / "-".join(Path(p).stem for p in plugins)
    command = [sys.executable, "-m", "parity", "run", case, "--device", "cuda"]
    command += [flag for p in plugins for flag in ("--plugin", str(PLUGINS / p))]
    proc = subprocess.run([*command, "--out", str(report), "-q"], capture_output=True, text=True, cwd=ROOT)
    found = json.loads((report / "report.json").read_text()) if (report / "report.json").is_file() else {}
    expected = dict(zip(("stage", "tensor", "step", "block"), where, strict=True))
    return {
        "plugin": " + ".join(plugins),
        "case": case,
        "exit": proc.returncode,
        "first_divergence": found.get("first_divergence"),
        "same_as_cpu": proc.returncode == 1 and found.get("first_divergence") == expected,
        "error": found.get("error") or (proc.stderr[-500:] if proc.returncode not in (0, 1) else None),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--cases", nargs="+", default=None, help="only the rows of these cases (default: every row)")
    args = parser.parse_args()
    faults = [f for f in FAULTS if args.cases is None or f[1] in args.cases]
    out = args.out / "faults"
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda fault: run(out, *fault[:3]), faults))
    for row in rows:
        print(f"[faults] {json.dumps(row)}", flush=True)
    (args.out / "faults.json").write_text(json.dumps(rows, indent=1))
    print(f"[faults] {sum(r['same_as_cpu'] for r in rows)}/{len(rows)} fail where they fail on the CPU")
    return 0 if all(r["same_as_cpu"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
