"""Command line: `parity run`, `parity list`. Exit codes: 0 pass, 1 fail, 2 error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parity import cases, families, plugins, progress
from parity.errors import ParityError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parity",
        description="Compare a Diffusers pipeline with its SGLang port, stage by stage.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one case and write a report")
    run.add_argument("target", help="a bundled case name (see `parity list`), a case file, or a model directory")
    run.add_argument("--family", help="family adapter (default: detected from model_index.json)")
    run.add_argument("--out", type=Path, help="report directory (default: reports/<case>-<dtype>)")
    run.add_argument("--steps", type=int)
    run.add_argument("--height", type=int)
    run.add_argument("--width", type=int)
    run.add_argument("--seed", type=int)
    run.add_argument("--prompt")
    run.add_argument("--dtype", choices=cases.DTYPES)
    run.add_argument("--device", choices=cases.DEVICES)
    run.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="PATH_OR_MODULE",
        help="import this file or module before either pipeline is built (repeatable)",
    )
    sub.add_parser("list", help="list the bundled cases")
    return parser


def _list() -> int:
    for case in cases.bundled().values():
        expect = "" if case.expected == "pass" else f"  (expected to fail: {case.reason})"
        print(
            f"{case.name:<24} family={case.family:<8} {case.height}x{case.width} "
            f"steps={case.steps} dtype={case.dtype}{expect}"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    from parity.harness import run_case

    loaded = plugins.load_all(args.plugin)
    if args.family:
        families.get(args.family)  # fail early on a typo
    case = cases.resolve(args.target, family=args.family).with_overrides(
        family=args.family,
        steps=args.steps,
        height=args.height,
        width=args.width,
        seed=args.seed,
        prompt=args.prompt,
        dtype=args.dtype,
        device=args.device,
    )
    out = args.out or Path("reports") / f"{case.name}-{case.dtype}"
    verdict, doc = run_case(case, out, loaded)
    summary = doc["summary"]
    line = f"{case.name} [{case.dtype}, {case.device}]: {verdict.verdict.upper()}"
    line += f" ({summary['passed']}/{summary['checks']} checks passed)"
    if verdict.first_divergence:
        fd = verdict.first_divergence
        where = ", ".join(f"{k}={v}" for k, v in fd.items() if v is not None)
        line += f"; first divergence: {where}"
        if verdict.first_check and verdict.first_check.message:
            line += f" ({verdict.first_check.message})"
    print(line)
    print(f"report: {out / 'report.md'}")
    if verdict.error:
        print(f"parity: error: {verdict.error}", file=sys.stderr)
    return verdict.exit_code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        return _run(args)
    except ParityError as exc:
        progress.say("stopped")
        print(f"parity: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
