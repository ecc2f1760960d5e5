"""Benchmark: where the time of one `parity run` goes, on this machine.

`python -m parity.bench [case] [--dtype D]` prints import, fixture build (into a fresh cache),
the reference run, the port run and the comparison+report, in seconds. Numbers only; nothing is
asserted. Run it in a fresh process: the import row is only meaningful on a cold import.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.bench")
    parser.add_argument("case", nargs="?", default="flux-tiny")
    parser.add_argument("--dtype", default=None)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    import diffusers  # noqa: F401
    import sglang.multimodal_gen.runtime.pipelines_core  # noqa: F401
    import torch  # noqa: F401

    from parity import cases, fixtures
    from parity.harness import run_case

    import_s = time.perf_counter() - t0
    case = cases.resolve(args.case).with_overrides(dtype=args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PARITY_CACHE_DIR"] = str(Path(tmp) / "cache")  # force a real fixture build
        if case.fixture:
            t0 = time.perf_counter()
            fixtures.ensure(case.fixture)
            build_s = time.perf_counter() - t0
        else:
            build_s = float("nan")
        t0 = time.perf_counter()
        verdict, doc = run_case(case, Path(tmp) / "report")
        total_s = time.perf_counter() - t0
    t = doc["timings_s"]
    rows = [
        ("import torch + diffusers + sglang", import_s),
        ("fixture build (fresh cache)", build_s),
        ("reference: Diffusers load + run", t.get("reference", float("nan"))),
        ("port: SGLang load + run", t.get("port", float("nan"))),
        ("compare", t.get("compare", float("nan"))),
        ("whole run_case (incl. cached fixture, report)", total_s),
    ]
    print(
        f"parity bench: {case.name} [{case.dtype}, {case.device}], verdict {verdict.verdict}, "
        f"{os.cpu_count()} CPUs, torch {doc['versions']['torch']}"
    )
    for name, seconds in rows:
        print(f"  {name:<48} {seconds:8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
