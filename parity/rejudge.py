"""`parity rejudge REPORT_DIR`: the traces a run saved (`parity run --save-traces`) aligned, compared and
judged again, under the tolerances as they are now or another case's, into a fresh report; no pipeline runs.

The same path as a run's (parity.session.Session.compare, parity.results, parity.report): only the traces
and the port's Req contracts come from files. What a run does beyond its traces is not redone: the fp64
referee (it replays a pipeline), the second run of the default block policy (a first failing step whose
blocks the run did not capture stays without block checks), and a `--port-parallel` run's rank agreement
(not saved: refused).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from parity import cases, families, report_dir, reports, saved_traces
from parity.cases import Case
from parity.errors import ParityError
from parity.report import write
from parity.report_dir import ReportDir
from parity.results import Comparison, RunReport, combine
from parity.session import Session, Setup, policy_for, trace_bytes
from parity.trace import Key
from parity.vocab import Mode

DEFAULT_OUT = "rejudged"  # REPORT_DIR/rejudged unless --out says otherwise
# The keys of a case that make the run what it is: a --case that differs in them judges other traces.
RUN_KEYS = (
    *("family", "fixture", "model_dir", "prompt", "negative_prompt", "seed", "height", "width", "steps"),
    *("num_frames", "input_image", "dtype", "device", "port_ops", "port_parallel"),
)


def source_dir(report: Path) -> Path:
    """The report directory of a report directory or of its report.json."""
    report = Path(report)
    return report.parent if report.is_file() else report


def saved_case(doc: dict[str, Any]) -> Case:
    """The run's case as report.json recorded it (keys this parity does not know are left out)."""
    known = {f.name for f in dataclasses.fields(Case)}
    recorded = doc.get("case")
    if not isinstance(recorded, dict) or "name" not in recorded:
        raise ParityError("report.json records no case: not a report of `parity run`")
    return Case(**{k: v for k, v in recorded.items() if k in known})


def with_tolerances(saved: Case, spec: str | None) -> tuple[Case, str, list[str]]:
    """The saved run's case judged under `spec`'s tolerances and expectation (None: the saved case's own),
    where those came from, and notes on what of `spec` does not apply (its run parameters)."""
    if spec is None:
        return saved, f"case {saved.name} (as saved)", []
    given = cases.resolve(spec)
    case = dataclasses.replace(
        saved,
        tolerance=given.tolerance,
        expected=given.expected,
        reason=given.reason,
        expected_divergence=given.expected_divergence,
    )
    differ = [f"{k} {getattr(given, k)!r}" for k in RUN_KEYS if getattr(given, k) != getattr(saved, k)]
    notes = [f"rejudged under the tolerances and expectation of case {given.name} ({spec})"]
    if differ:
        notes.append(f"case {given.name} also sets {', '.join(differ)}: ignored, the traces are the saved run's")
    return case, f"case {given.name}", notes


def rejudge(report: Path, out: Path | None = None, case_spec: str | None = None) -> tuple[RunReport, Path]:
    """Judge the saved traces of `report` again and write the fresh report into `out` (default:
    REPORT_DIR/rejudged); returns it and where it went. ParityError when there is nothing to judge."""
    t0 = time.perf_counter()
    source = source_dir(report)
    doc = reports.read_document(source)
    if doc.get("parallel"):
        raise ParityError(
            f"{source} is a --port-parallel run: rejudge does not redo the ranks' agreement (not saved); "
            "run it again instead"
        )
    case, origin, notes = with_tolerances(saved_case(doc), case_spec)
    out = Path(out) if out is not None else source / DEFAULT_OUT
    report_dir.check(out)  # before the traces are read
    saved = source / saved_traces.DIRNAME
    traces = saved_traces.load(saved)  # on the CPU, wherever the run was
    if "reference" not in traces:
        raise ParityError(f"{source}: the saved traces hold no reference trace")
    adapter = families.get(str(doc.get("family")))  # a family a plugin registered: not known here
    setup = Setup(source, adapter, policy_for(case, origin))
    mode = Mode(doc.get("mode", Mode.FULL))
    main_mode = Mode.ISOLATED if mode is Mode.ISOLATED else Mode.FULL
    error = doc.get("error")
    # A run that stopped early compared only what both sides made; a whole trace ends with its frames.
    partial = bool(error) or any(trace.get(Key("frames")) is None for trace in traces.values())
    with ThreadPoolExecutor(max_workers=1) as unused:  # a Session's PNG writer: the PNGs are copied instead
        # The run's own comparison (the Req contract's checks included), over the saved traces.
        judge = Session.over_saved(case, setup, traces, saved_traces.contracts(saved), unused, source)

        def judged(name: str, as_mode: Mode) -> Comparison | None:
            return judge.compare(name, as_mode, partial=partial) if name in traces else None

        isolated = judged("isolated", Mode.ISOLATED) if mode is not Mode.FULL else None
        first = isolated if main_mode is Mode.ISOLATED else judged("port", Mode.FULL)
        native = judged("native", Mode((doc.get("port_ops_both") or {}).get("mode", main_mode)))
        contract = judge.contract_section("isolated" if main_mode is Mode.ISOLATED else "port")
    main = Comparison.judge(main_mode, first.checks if first else (), first.noise if first else None, error)
    verdict, decided_by = combine(main, isolated)
    notes += [f"rejudged from the traces saved in {source} (no pipeline ran)"]
    if doc.get("referee"):
        notes.append("the fp64 referee was not replayed (rejudge runs no pipeline)")
    if doc.get("audit"):
        notes.append("the float64 audit was not replayed (rejudge runs no pipeline): its checks are not in this report")
    expected = [f"expected to fail: {case.reason}"] if case.expected_for() == "fail" else []
    kept = [n for n in doc.get("notes") or [] if not n.startswith("expected to fail: ")]
    result = RunReport(
        mode=mode,
        case=case.as_dict(),
        main=main,
        verdict=verdict,
        decided_by=decided_by,
        family=adapter.name,
        versions=doc.get("versions") or {},
        pipelines=doc.get("pipelines") or {},
        components=doc.get("components") or {},
        plugins=doc.get("plugins") or [],
        port_ops=doc.get("port_ops"),
        # the saved traces stay in the source directory, named there
        capture={k: v for k, v in (doc.get("capture") or {}).items() if k != "saved_traces"}
        | {"rejudged_from": str(source)},
        frames_png=doc.get("frames_png") or [],
        trace_bytes={name: trace_bytes(trace) for name, trace in traces.items()},
        native=native,
        isolated=isolated,
        cfg=case.cfg_enabled,
        timings_s={"rejudge": round(time.perf_counter() - t0, 3)},
        gpu_peak_mib=doc.get("gpu_peak_mib"),
        device_numerics=doc.get("device_numerics"),
        notes=expected + kept + notes,
        contract=contract,
    )
    target = ReportDir(out)
    with target as staging:
        for name in result.frames_png:  # report.md shows them
            if (source / name).is_file():
                shutil.copy2(source / name, staging / name)
        write(staging, result)
        target.commit()
    return result, out
