"""Command line: `parity run`, `parity list`, `parity noise`, `parity compare`, `parity rejudge`,
`parity sensitivity`, and `parity --family` (the known families). Exit codes: 0 pass, 1 fail, 2 error (bad
input, setup, or a side that could not run), 130 interrupted.

Inputs are checked before torch, diffusers or sglang is imported (the case schema, --out), so a
mistake costs a second, not a pipeline load; those modules are imported only when a run starts.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from parity import cases, interrupts, junit, parallel, plugins, progress, report_dir
from parity.capture import BlockCapture
from parity.errors import ParityError
from parity.vocab import EXIT_CODES, Mode, Outcome

if TYPE_CHECKING:
    from parity.results import RunReport

EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
EXIT_CODE_HELP = f"""exit codes:
  {EXIT_CODES[Outcome.PASS]}    pass: every check within its tolerance
  {EXIT_CODES[Outcome.FAIL]}    fail: the port diverges (report.json names the first divergence)
  {EXIT_CODES[Outcome.ERROR]}    error: bad input, setup, or a side that could not run (what ran is still reported)
  {EXIT_INTERRUPTED}  interrupted by Ctrl-C"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parity",
        description="Compare a Diffusers pipeline with its SGLang port, stage by stage.",
    )
    parser.add_argument(
        "--family",
        action=_FamiliesAction,
        metavar="NAME",
        help="list the known families (or the one named): the Diffusers pipeline class, the SGLang pipeline it "
        "maps to, and the bundled cases that use it; then exit",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run one case and write a report",
        epilog=EXIT_CODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "target",
        help="a bundled case name (see `parity list`), a case file, a model directory, or a Hugging Face hub id "
        "(owner/name: its snapshot in the Hugging Face cache, downloaded first when not cached and online)",
    )
    run.add_argument(
        "--family", help="family adapter (default: detected from model_index.json; `parity --family` lists them)"
    )
    run.add_argument(
        "--out", type=Path, help="report directory (default: reports/<case>-<dtype>, a hub id's '/' written '--')"
    )
    run.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write a JUnit XML file with one testcase for this run (parity.<case>, <dtype>-<mode>): "
        "a failure's message is the first divergence, its text the hints; an error run is an <error>",
    )
    run.add_argument(
        "--revision",
        metavar="REV",
        help="with a hub id: the branch, tag or commit hash to run (default: main); the report records the commit",
    )
    run.add_argument("--steps", type=int, help="denoising steps (default: the case's)")
    run.add_argument("--height", type=int, help="image height in pixels (default: the case's)")
    run.add_argument("--width", type=int, help="image width in pixels (default: the case's)")
    run.add_argument("--seed", type=int, help="seed of the initial noise, drawn on the CPU for both sides")
    run.add_argument("--prompt", help="the prompt (default: the case's)")
    run.add_argument("--dtype", choices=cases.DTYPES, help="both pipelines' dtype (default: the case's)")
    run.add_argument(
        "--device", choices=cases.DEVICES, help="where both pipelines run and records are compared (default: cpu)"
    )
    run.add_argument(
        "--port-ops",
        choices=cases.PORT_OPS,
        help="kernels: SGLang's own dispatch (fused kernels); native: every SGLang CustomOp runs its "
        "forward_native, fused kernels their pure-torch twins, attention torch SDPA (the report lists "
        "each rerouted op); auto (default): native on CPU, kernels on CUDA",
    )
    run.add_argument(
        "--port-parallel",
        metavar="DEGREES",
        help="run the port in several ranks, e.g. tp=2, ulysses=2, kvgather=2, cfg=2, ring=2 (GPU) or "
        "tp=2,ulysses=2 (the product is the number of ranks); the report compares it with the reference "
        "and with the same port at one rank",
    )
    run.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="PATH_OR_MODULE",
        help="import this file or module before either pipeline is built (repeatable)",
    )
    run.add_argument(
        "--block-steps",
        default="default",
        metavar="POLICY",
        help="denoising steps whose DiT blocks are captured: default (first, last and first failing step), "
        "all, none, or indices like 0,3",
    )
    run.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=Mode.FULL.value,
        help="full: the port runs on its own; isolated: each port component runs on the reference's "
        "inputs (teacher forcing); both",
    )
    run.add_argument(
        "--referee",
        choices=["fp64"],
        default=None,
        help="when the run fails, replay the first failing DiT call or block in float64 on both sides and "
        "judge the port equivalent if its error is within 2x the reference's own",
    )
    run.add_argument(
        "--audit",
        choices=["fp64"],
        default=None,
        help="also replay the first step's DiT call and every block in float64 on both sides (the port on the "
        "reference's inputs) and fail on any difference float64 rounding cannot explain: logic differences "
        "below the run dtype's rounding (about 2 more pipeline runs)",
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="let the libraries print to the console (default: their output goes to libraries.log in --out)",
    )
    run.add_argument(
        "-q", "--quiet", action="store_true", help="no progress lines (phases, denoising steps), only the verdict"
    )
    run.add_argument(
        "--save-traces",
        action="store_true",
        help="also write both sides' records (safetensors, with traces/index.json) into the report directory, "
        "for `parity rejudge`; the run is then compared from whole traces, never online",
    )
    sens = sub.add_parser(
        "sensitivity",
        help="how small an error in each stage the verdict detects, and whether it names that stage",
        description="Inject into the port, through isolated mode's teacher, perturbations of relative L2 size "
        "1e-1 down to 1e-7 (a fixed seeded direction) into one representative tensor per stage, and find the "
        "smallest the verdict detects and whether the first new failure names that tensor. The table goes to "
        "reports/sensitivity/<case>-<dtype>/ (report.json's `sensitivity`, report.md) and is shown again, with "
        "no pipeline run, while the case, fixture, versions and tolerances are unchanged.",
    )
    sens.add_argument("target", help="a bundled case name, a case file, a model directory or a hub id (as `run`)")
    sens.add_argument(
        "--dtype", action="append", choices=cases.DTYPES, help="repeatable; one table per dtype (default: the case's)"
    )
    sens.add_argument("--device", choices=cases.DEVICES, help="where both pipelines run (default: the case's)")
    sens.add_argument(
        "--tensors",
        metavar="NAMES",
        help="probe only these, comma-separated: a tensor (noise_pred), stage/tensor (denoising/latents) or "
        "`blocks` (default: one per stage, see the report)",
    )
    sens.add_argument(
        "--out",
        type=Path,
        metavar="ROOT",
        help="where the tables go, one directory per dtype (default: reports/sensitivity)",
    )
    sens.add_argument("--force", action="store_true", help="probe again even when a kept table still holds")
    sens.add_argument("--verbose", action="store_true", help="let the libraries print to the console")
    sens.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the summary per dtype")
    sub.add_parser("list", help="list the bundled cases")
    rejudge_cmd = sub.add_parser(
        "rejudge",
        help="judge a report's saved traces (parity run --save-traces) again, without running a pipeline",
        description="Align, compare and judge the traces a run saved (parity run --save-traces) again, under\n"
        "the tolerances as they are now (defaults, ./pyproject.toml's [tool.parity], the case's own)\n"
        "or another case's, and write a fresh report. No pipeline runs: the fp64 referee and the\n"
        "default block policy's second run are not redone.",
        epilog=EXIT_CODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rejudge_cmd.add_argument("report", type=Path, help="a report directory written with --save-traces")
    rejudge_cmd.add_argument(
        "--case",
        metavar="CASE_OR_TOML",
        help="judge under this bundled case's or case file's [tolerance] and expectation (default: the saved "
        "case's); its run parameters are ignored",
    )
    rejudge_cmd.add_argument("--out", type=Path, help="where the fresh report goes (default: REPORT/rejudged)")
    compare_cmd = sub.add_parser(
        "compare",
        help="what changed between two report directories (exit 1 if B has a failure that A did not)",
        description="Compare the checks of two report directories (before and after a fix, kernels vs native, "
        "CPU vs GPU, an SGLang upgrade): the verdicts, the run parameters that differ, and per stage the checks "
        "whose status changed or whose rel_l2 or max_abs moved by more than --factor either way. Exit 0 when B "
        "has no failure that A did not, 1 when it has, 2 on bad input.",
    )
    compare_cmd.add_argument("a", type=Path, help="report A (the baseline): a report directory or its report.json")
    compare_cmd.add_argument("b", type=Path, help="report B (the new run)")
    compare_cmd.add_argument(
        "--factor",
        type=float,
        default=2.0,
        help="a passing check whose rel_l2 or max_abs moved by more than this factor either way is listed "
        "(default 2; from or to 0 always counts)",
    )
    compare_cmd.add_argument(
        "--limit", type=int, default=10, metavar="N", help="checks shown per stage (default 10; 0: all)"
    )
    compare_cmd.add_argument("--json", action="store_true", help="print the comparison as JSON instead")
    noise_cmd = sub.add_parser(
        "noise",
        help="does an image (PNG/JPEG) or a .npy frame array look like noise? (exit 1 if so)",
        description="Judge images and .npy frame arrays on their own: one line per file, exit 1 if any "
        "looks like noise (or is NaN/Inf, constant, periodic or saturated), 2 if a file cannot be judged.",
    )
    noise_cmd.add_argument(
        "files", nargs="+", type=Path, help="PNG/JPEG/... images or .npy arrays (H x W[ x C], C x H x W, stacks)"
    )
    noise_cmd.add_argument(
        "--range",
        metavar="LOW,HIGH",
        help="the values that are black and white, for every file (e.g. 0,255; write --range=-1,1 for a "
        "negative LOW). Default: by dtype: uint8 and 8-bit images 0..255, uint16 and 16-bit PNGs "
        "0..65535, other integers 0..their maximum, bool 0/1, floats 0..1 (a float file outside it is an error)",
    )
    return parser


def _list() -> int:
    for case in cases.bundled().values():
        failing = [d for d in cases.DTYPES if case.expected_for(d) == "fail"]
        where = "" if len(failing) == len(cases.DTYPES) else f" in {'/'.join(failing)}"
        pins = {d: case.expected_divergence_for(d) for d in failing if case.expected_divergence_for(d)}
        if len(set(pins.values())) == 1:
            at = f" at {next(iter(pins.values()))}"
        else:
            at = " at " + ", ".join(f"{pin} ({dtype})" for dtype, pin in pins.items()) if pins else ""
        expect = f"  (expected to fail{where}{at}: {case.reason})" if failing else ""
        device = "" if case.device == "cpu" else f" device={case.device}"
        ranks = f" port_parallel={case.port_parallel}" if case.degrees.parallel else ""
        also = case.suite.get("parallel", []) + case.suite.get("parallel_all", [])
        ranks += f" (suite also at {', '.join(also)})" if also else ""
        print(
            f"{case.name:<24} family={case.family:<8} {case.height}x{case.width} "
            f"steps={case.steps} dtype={case.dtype}{device}{ranks}{expect}"
        )
    return 0


def _load_frames(path: Path, value_range: tuple[float, float] | None = None):  # -> image_files.Frames
    """The frames of an image file or of a .npy array (H x W[ x C], C x H x W, or a stack of those),
    checked, scaled to [0, 1] and cut into tiles when large (parity/image_files.py)."""
    from parity import image_files

    return image_files.load(path, value_range)


def _noise(files: list[Path], value_range: str | None = None) -> int:
    """One line per file; exit 2 if any file cannot be judged (the others still are), else 1 if any
    is flagged."""
    from parity import image_files

    try:
        bounds = image_files.parse_range(value_range) if value_range is not None else None
    except ParityError as exc:
        print(f"parity: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    flagged = errors = 0
    for path in files:
        try:
            frames = _load_frames(path, bounds)
        except ParityError as exc:
            print(f"parity: error: {exc.one_line()}", file=sys.stderr)
            errors += 1
            continue
        from parity.noise import detect  # numpy arrays are judged in numpy: torch is never imported here

        reports = [image_files.worst_tile([detect(tile) for tile in tiles]) for tiles in frames]
        worst = max(reports, key=lambda r: (r.flagged, r.score))
        flagged += worst.flagged
        verdict = worst.reason.upper() if worst.flagged else "ok"
        print(
            f"{path}: {verdict} score={worst.score:.3f} neighbour_correlation={worst.neighbour_correlation:.3f} "
            f"high_frequency_share={worst.high_frequency_share:.3f}{frames.note()}"
        )
    return 2 if errors else 1 if flagged else 0


def _compare(a: Path, b: Path, factor: float, limit: int, as_json: bool) -> int:
    """`parity compare A B`: 0 when B has no failure that A did not, 1 when it has, 2 (one line) when
    either is not a report this parity reads (parity.reports)."""
    import json

    from parity import reports  # pandas: imported only for this command

    try:
        comparison = reports.compare(a, b, factor)
    except ParityError as exc:  # nothing ran: no "stopped" progress line, only the error
        print(f"parity: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    if as_json:
        print(json.dumps(comparison.as_json(), indent=2, allow_nan=False))
    else:
        print("\n".join(comparison.lines(limit)))
    return comparison.exit_code


def _run(args: argparse.Namespace) -> int:
    capture = BlockCapture.parse(args.block_steps)
    case = cases.resolve(args.target, family=args.family).with_overrides(
        family=args.family,
        steps=args.steps,
        height=args.height,
        width=args.width,
        seed=args.seed,
        prompt=args.prompt,
        dtype=args.dtype,
        device=args.device,
        port_ops=args.port_ops,
        port_parallel=args.port_parallel,
        revision=args.revision,
    )
    parallel.check_run(case.degrees, args.mode, case.port_ops)  # before any model work
    # A hub id's '/' would nest the report one level down: written '--' as the Hugging Face cache does.
    out = args.out or Path("reports") / f"{case.name.replace('/', '--')}-{case.dtype}"
    report_dir.check(out)  # before any model work: a bad --out is found in a second
    if args.junit is not None:
        junit.check(args.junit)  # so is a bad --junit
    progress.quiet = args.quiet
    loaded = plugins.load_all(args.plugin)
    from parity import families  # imports torch: only once the inputs are known to be good
    from parity.session import run_case

    if args.family:
        families.get(args.family)  # fail early on a typo (a plugin may have registered it)
    t0 = time.perf_counter()
    report = run_case(
        case,
        out,
        loaded,
        capture,
        args.mode,
        args.referee,
        verbose=args.verbose,
        plugin_specs=args.plugin,
        save_traces=args.save_traces,
        audit_mode=args.audit,
    )
    for line in console_lines(report, out):
        print(line)
    if args.junit is not None:  # on a fail or an error too: the run's report exists
        run = junit.run_from_doc(report.as_json(), str(out / "report.md"), time.perf_counter() - t0)
        junit.write(args.junit, "parity", [junit.testcase(run)])
    if report.verdict.error:
        print(f"parity: error: {report.verdict.error}", file=sys.stderr)
    return report.verdict.exit_code


def _sensitivity(args: argparse.Namespace) -> int:
    """`parity sensitivity`: one table per dtype, each kept and reused while its key holds; prints each
    dtype's summary line and where its report is. Exit 0 once every table is there, 2 on an error."""
    from parity import sensitivity_cache

    base = cases.resolve(args.target)
    bundled = cases.cases_dir() / f"{args.target}.toml"
    case_file = Path(args.target) if args.target.endswith(".toml") else bundled if bundled.is_file() else None
    root = args.out or sensitivity_cache.ROOT
    planned = [base.with_overrides(dtype=dtype, device=args.device) for dtype in args.dtype or [base.dtype]]
    for case in planned:  # before any model work
        report_dir.check(sensitivity_cache.out_dir(case, root))
    progress.quiet = args.quiet
    from parity.sensitivity_run import measure  # torch and the runners: only once the inputs are good

    for case in planned:
        out = sensitivity_cache.out_dir(case, root)
        measured = measure(case, out, args.tensors, args.force, args.verbose, case_file)
        section = measured.doc["sensitivity"]
        how = "kept table, no pipeline ran" if measured.cached else f"{section['port_runs']} port runs"
        seconds = "" if measured.cached else f", {section['seconds']['total']} s"
        print(f"{case.name} [{case.dtype}, {case.device}]: {measured.summary}")
        print(f"  report: {measured.out / 'report.md'} ({how}{seconds})")
    return 0


def _rejudge(report: Path, case: str | None, out: Path | None) -> int:
    """`parity rejudge`: the verdict lines of the fresh report, exit codes as `parity run`."""
    from parity.rejudge import rejudge  # torch: only once the command is known

    judged, written = rejudge(report, out, case)
    for line in console_lines(judged, written):
        print(line)
    if judged.verdict.error:
        print(f"parity: error: {judged.verdict.error}", file=sys.stderr)
    return judged.verdict.exit_code


class _FamiliesAction(argparse.Action):
    """`parity --family [NAME]`: like --version, answered while the arguments are parsed (no command needed)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object, option: object = None):
        parser.exit(_families(values if isinstance(values, str) else None))


def _families(name: str | None = None) -> int:
    """One line per known family (or the one named): its Diffusers pipeline class(es), the SGLang native
    pipeline it maps to (with the model id that makes SGLang resolve it), and the bundled cases using it."""
    from parity import families  # the adapters (torch): only when asked for

    try:
        known = [families.get(name)] if name else [families.get(n) for n in sorted(families.known())]
        by_family: dict[str, list[str]] = {}
        for case in cases.bundled().values():
            by_family.setdefault(str(case.family), []).append(case.name)
    except ParityError as exc:
        print(f"parity: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    width = max(len(adapter.name) for adapter in known)
    for adapter in known:
        port = adapter.port
        model_id = f" (model_id {port.model_id})" if port.model_id else ""
        used = ", ".join(sorted(by_family.get(adapter.name, []))) or "none"
        print(
            f"{adapter.name:<{width}}  Diffusers {' | '.join(adapter.diffusers_classes)} -> SGLang {port.pipeline}"
            f"{model_id}; cases: {used}"
        )
    return 0


def console_lines(report: RunReport, out: Path) -> list[str]:
    """What `parity run` prints: the verdict line, then the frames, the referee, the hints, the report."""
    case, verdict, summary = report.case, report.verdict, report.summary
    line = f"{case['name']} [{case['dtype']}, {case['device']}, {report.mode}]: {verdict.outcome.upper()}"
    line += f" ({summary['passed']}/{summary['checks']} checks passed"
    name = report.decided_by_name  # the main comparison passes, this one does not
    decided = f"{report.decided_by.summary['passed']}/{report.decided_by.summary['checks']}"
    if name == "isolated":
        line += f" in the full run, {decided} in the isolated run"
    elif name is not None:
        line += f" against the reference, {decided} in {name}"
    line += ")"
    if verdict.first is not None:
        where = ", ".join(f"{k}={v}" for k, v in verdict.first.where().items() if v is not None)
        line += f"; first divergence: {where}"
        if verdict.first.message:
            line += f" ({verdict.first.message})"
    if report.mode is Mode.BOTH and report.isolated is not None:
        line += f"; isolated components: {report.isolated.verdict.outcome.upper()}"
    lines = [line]
    if report.parallel is not None:
        lines.append(
            f"  port ranks ({report.case['port_parallel']}): {report.parallel.conclusion(report.main.verdict)}"
        )
    section = report.main.noise
    if section:
        port, ref = section["port"][0], section["reference"][0]
        lines.append(
            f"  decoded frames: {section['verdict'].upper()} (noise score port {port['score']:.2f}, "
            f"reference {ref['score']:.2f})"
        )
    judged = report.referee
    if judged and "skipped" in judged:
        lines.append(f"  fp64 referee: skipped ({judged['skipped']})")
    elif judged:
        lines.append(
            f"  fp64 referee ({judged['tensor']} step {judged['step']}"
            f"{' block ' + judged['block'] if judged['block'] else ''}): port error "
            f"{judged['port_error']:.3g} vs reference error {judged['reference_error']:.3g} -> "
            f"{'numerically equivalent' if judged['equivalent'] else 'NOT equivalent'} "
            f"(closer to fp64: {judged['closer']}; port vs reference in fp64: "
            f"{judged['port_fp64_vs_reference_fp64']:.3g})"
        )
    if report.audit:
        from parity import audit  # here, not at the top: the CLI validates its input before torch loads

        lines.append("  " + audit.describe(report.audit))
    lines += [f"  hint ({hint['at']}): {hint['symptom']}: likely {hint['likely_cause']}" for hint in report.hints]
    lines.append(f"report: {out / 'report.md'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """The one entry point for errors: a ParityError (bad input, setup, a side that failed) is one
    line and exit 2; Ctrl-C is one line and exit 130 (the previous report untouched); any other
    exception is a parity bug: one line, exit 2, its traceback in a file (never only the console)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        if args.command == "noise":
            return _noise(args.files, args.range)
        if args.command == "compare":
            return _compare(args.a, args.b, args.factor, args.limit, args.json)
        if args.command == "rejudge":
            return _rejudge(args.report, args.case, args.out)
        if args.command == "sensitivity":
            with interrupts.deferred():
                return _sensitivity(args)
        with interrupts.deferred():  # Ctrl-C at safe points only: never inside a library's import
            return _run(args)
    except ParityError as exc:
        progress.say("stopped")
        print(f"parity: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # A second Ctrl-C (or a library re-sending the signal) must not cut the last line short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("parity: interrupted; nothing was written (an earlier report is left as it was)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        where = _save_traceback()
        print(f"parity: error: internal error: {type(exc).__name__}: {exc} (traceback in {where})", file=sys.stderr)
        return 2


def _save_traceback() -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", prefix="parity-traceback-", suffix=".txt", delete=False) as f:
        f.write(traceback.format_exc())
    return f.name


if __name__ == "__main__":
    sys.exit(main())
