"""`parity sensitivity CASE`: how small an error in each stage's tensors the verdict detects, and whether it
then names that stage. "My bf16 run passed: what could it have missed?"

The reference runs once; its trace is the teacher. The port runs once teacher-forced and unperturbed (isolated
mode), then once per probe with one tensor of the teacher perturbed (parity.sensitivity.perturb): the port
consumes the perturbed value where isolated mode hands it the reference's, and records it as its own value
of that tensor, as a port whose code produced it would. Each probe is judged as isolated mode judges a run.
Both pipelines are loaded once (the runners' caches) and the port is run again for every probe; a tensor
the port never asks the teacher for (the frames, the last block's output) needs no run: its probes are
the unperturbed trace with that record replaced.

Per tensor: one representative per stage (the prompt embeddings, the initial latents, the sigmas, then at
step 0 the DiT input, the first and the last captured block, noise_pred and the scheduler's latents, then the
VAE input and the frames), each searched by parity.sensitivity.search. The table is kept per case and dtype
(parity.sensitivity_cache) and shown again while its key holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parity import library_output, numerics, progress, report, report_html, sensitivity, sensitivity_cache, stages
from parity.capture import BlockCapture
from parity.cases import Case
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.files import json_safe, write_atomic
from parity.report_dir import ReportDir
from parity.results import Comparison
from parity.runners import RunOptions
from parity.runners.teacher import Teacher
from parity.sensitivity import Probe, Target
from parity.sensitivity_table import Finding, Row, markdown, summary_line
from parity.session import Session, comparison, versions
from parity.trace import Key, Record, Trace
from parity.vocab import Mode, Outcome, Side


class Injecting(Trace):
    """The reference trace as the port's teacher, with the record `key` holding `value` instead; notes every
    key the port asks for (`asked`), so the unperturbed run tells which tensors the port consumes."""

    def __init__(self, reference: Trace, key: Key | None = None, value: Any = None) -> None:
        super().__init__(reference.side, reference.device)
        self.extend(reference)  # the same records, not copies
        self.key, self.value = key, value
        self.asked: set[Key] = set()

    def get(self, key: Key) -> Record | None:
        self.asked.add(key)
        record = super().get(key)
        if record is None or key != self.key:
            return record
        return dataclasses.replace(record, value=self.value)


def as_port_value(teacher: Trace, key: Key, record: Record) -> Any:
    """The teacher's value of `key` as the port receives it: on the port record's device, dtype and shape
    (parity.runners.teacher); None when the teacher cannot hand it over."""
    return Teacher(teacher).get(key.tensor, key.step, key.block, like=record.value)


def with_value(trace: Trace, key: Key, value: Any) -> Trace:
    """A copy of `trace` (the same records) whose record `key` holds `value`: the perturbed value as the
    port's own, since a port whose code made it would have recorded it so."""
    target = trace.get(key)
    copy = Trace(trace.side, trace.device)
    copy.extend(dataclasses.replace(r, value=value) if r is target else r for r in trace)
    return copy


def representatives(reference: Trace, adapter: FamilyAdapter) -> list[Target]:
    """One float tensor per stage, the denoising stage's at step 0 (its DiT input, first and last captured
    block, noise_pred, scheduler output), in execution order; a tensor the reference lacks is left out."""
    records = list(reference)

    def float_record(key: Key) -> Record | None:
        record = reference.get(key)
        return record if record is not None and record.value.is_floating_point() else None

    embeds = [r.key for r in records if r.stage == stages.TEXT_ENCODING and r.key.tensor.endswith("_embeds")]
    embeds = sorted(embeds, key=lambda k: (k.tensor != "prompt_embeds", k.tensor.startswith("negative_")))
    step0 = [r.key for r in records if r.key.step == 0]
    blocks = [k.block for k in step0 if k.block is not None and not stages.is_block_input(k.block)]
    wanted = embeds[:1] + [Key("latents"), Key("sigmas"), Key("dit_input", 0)]
    for block in dict.fromkeys(blocks[:1] + blocks[-1:]):  # the first and the last, once when the same
        names = [k.tensor for k in step0 if k.block == block]
        wanted.append(Key("hidden_states" if "hidden_states" in names else names[0], 0, block))
    wanted += [Key("noise_pred", 0), Key("latents", 0), Key("vae_input"), Key("frames")]
    found = [(key, record) for key in wanted if (record := float_record(key)) is not None]
    return [Target(record.stage, key.tensor, key.step, key.block) for key, record in found]


def select(targets: list[Target], tensors: str | None) -> list[Target]:
    """The targets `--tensors` names (comma-separated: a tensor, `stage/tensor`, or `blocks`); all when None."""
    if tensors is None:
        return targets
    names = {n.strip() for n in tensors.split(",") if n.strip()}

    def named(t: Target) -> bool:
        return bool({t.tensor, f"{t.stage}/{t.tensor}", *(["blocks"] if t.block else [])} & names)

    chosen = [t for t in targets if named(t)]
    if not chosen:
        known = ", ".join(t.label() for t in targets)
        raise ParityError(f"--tensors {tensors!r} names none of the tensors probed here: {known}")
    return chosen


class Prober:
    """The probes of one case in one dtype, on one session's loaded pipelines."""

    def __init__(self, session: Session, tensors: str | None = None) -> None:
        self.session = session
        self.tensors = tensors
        self.port_runs = 0
        self.seconds: dict[str, float] = {}

    def _run_port(self, teacher: Trace, phase: str) -> Trace:
        trace = Trace(Side.PORT, self.session.case.device)
        options = RunOptions(block_steps=frozenset(self.session.captured), teacher=teacher)
        self.last_info = self.session.run_side(Side.PORT, trace, options, phase)
        self.port_runs += 1
        return trace

    def _compare(self, port: Trace) -> Comparison:
        setup, case = self.session.setup, self.session.case
        return comparison(self.reference, port, setup.adapter, setup.policy, case.dtype, Mode.ISOLATED)

    def run(self) -> tuple[Comparison, list[Row]]:
        """The reference, the unperturbed port, then every tensor's search; the unperturbed comparison and the rows."""
        session = self.session
        t0 = time.perf_counter()
        session.prepare()
        session.run_reference(session.first_options())
        self.reference = session.traces["reference"]
        t1 = time.perf_counter()
        teacher = Injecting(self.reference)
        self.unperturbed_trace = self._run_port(teacher, "port_unperturbed")
        session.infos[Side.PORT] = self.last_info
        self.consumed = set(teacher.asked)
        self.unperturbed = self._compare(self.unperturbed_trace)
        if self.unperturbed.verdict.outcome is Outcome.ERROR:
            raise ParityError(f"the unperturbed isolated run could not be judged: {self.unperturbed.verdict.error}")
        t2 = time.perf_counter()
        targets = select(representatives(self.reference, session.adapter), self.tensors)
        rows = []
        with _quiet_runs():
            for index, target in enumerate(targets, 1):
                rows.append(self._row(target, f"[{index}/{len(targets)}] {target.label()}"))
        t3 = time.perf_counter()
        self.seconds = {"reference": round(t1 - t0, 1), "unperturbed": round(t2 - t1, 1), "probes": round(t3 - t2, 1)}
        return self.unperturbed, rows

    def _row(self, target: Target, label: str) -> Row:
        key = Key(target.tensor, target.step, target.block)
        record = self.unperturbed_trace.get(key)
        if record is None:
            _say(f"{label}: the port records no such tensor")
            return Row(target, Finding.NOT_RECORDED)
        clean = as_port_value(self.reference, key, record)
        if clean is None:
            _say(f"{label}: the teacher cannot hand it to the port (shapes differ)")
            return Row(target, Finding.NOT_INJECTABLE)
        if any(not c.passed for c in self.unperturbed.checks if target.is_checked_by(c)):
            _say(f"{label}: fails unperturbed, not probed")
            return Row(target, Finding.FAILS_UNPERTURBED)
        fed, runs, t0 = key in self.consumed, self.port_runs, time.perf_counter()
        reference = self.reference.get(key)
        assert reference is not None  # representatives() picks recorded tensors only

        def probe(eps: float) -> Probe:
            teacher = Injecting(self.reference, key, sensitivity.perturb(reference.value, eps))
            port = self._run_port(teacher, "probe") if fed else self.unperturbed_trace
            injected = as_port_value(teacher, key, record)
            found = self._compare(with_value(port, key, injected))
            realized = sensitivity.relative_size(clean, injected)
            result = sensitivity.judge(target, eps, self.unperturbed.checks, found.checks, realized)
            seen = f"detected, first at {result.first_new}" if result.detected else "missed"
            _say(f"{label}: eps {eps:.2g} (held as {realized:.2g}): {seen}")
            return result

        found = sensitivity.search(probe)
        finding = Finding.BLIND if found.blind else Finding.DETECTED
        return Row(target, finding, found, fed, self.port_runs - runs, time.perf_counter() - t0)


_shown: bool | None = None  # within _quiet_runs: whether the user wants progress lines


def _say(message: str) -> None:
    """A progress line of the probes, shown while the port runs' own lines are hushed (_quiet_runs)."""
    if _shown is None:
        progress.say(f"sensitivity {message}")
        return
    if _shown:
        progress.quiet = False
        try:
            progress.say(f"sensitivity {message}")
        finally:
            progress.quiet = True


@contextlib.contextmanager
def _quiet_runs() -> Iterator[None]:
    """Within: the probes' port runs print no phase or step lines (dozens of runs); `_say` still prints,
    unless the user asked for quiet (`-q`)."""
    global _shown
    _shown, progress.quiet = not progress.quiet, True
    try:
        yield
    finally:
        progress.quiet, _shown = not _shown, None


@dataclasses.dataclass(frozen=True)
class Measured:
    doc: dict[str, Any]  # report.json's document
    out: Path
    cached: bool  # shown from the kept table: no pipeline ran

    @property
    def summary(self) -> str:
        return str(self.doc["sensitivity"]["summary"])


def document(
    session: Session, prober: Prober, unperturbed: Comparison, rows: list[Row], key: str, inputs: dict[str, str]
) -> dict[str, Any]:
    """report.json's document: the case, the versions, and the `sensitivity` section."""
    case, verdict = session.case, unperturbed.verdict
    first = verdict.first.label() if verdict.first is not None else None
    summary = summary_line(case.dtype, rows, first)
    return {
        "kind": sensitivity_cache.KIND,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "case": case.as_dict(),
        "family": session.adapter.name,
        "versions": versions(),
        "pipelines": {side: info.pipeline for side, info in session.infos.items()},
        "sensitivity": {
            "key": key,
            "key_inputs": inputs,
            "summary": summary,
            "mode": Mode.ISOLATED,
            "low": sensitivity.LOW,
            "high": sensitivity.HIGH,
            "halvings": sensitivity.HALVINGS,
            "seed": sensitivity.SEED,
            "unperturbed": {
                "verdict": verdict.outcome,
                "first_divergence": first,
                "checks": unperturbed.summary["checks"],
                "passed": unperturbed.summary["passed"],
                "failing": [c.label() for c in unperturbed.checks if not c.passed],
            },
            "rows": [row.as_dict() for row in rows],
            "port_runs": prober.port_runs,
            "seconds": {**prober.seconds, "total": round(sum(prober.seconds.values()), 1)},
        },
    }


def write_page(out: Path) -> None:
    """report.html beside the table's report.md; a fault in the page costs the table only its page (as a
    run's, parity.report.write)."""
    try:
        report_html.write_sensitivity(out)
    except Exception as exc:
        write_atomic(out / report.HTML_TRACEBACK, traceback.format_exc())
        progress.say(f"report.html not written ({type(exc).__name__}: {exc}): see {report.HTML_TRACEBACK}")


def measure(
    case: Case,
    out: Path | None = None,
    tensors: str | None = None,
    force: bool = False,
    verbose: bool = False,
    case_file: Path | None = None,
) -> Measured:
    """The sensitivity table of `case` in its dtype, written to `out` (default:
    reports/sensitivity/<case>-<dtype>); the kept one when its key still holds, unless `force`."""
    if case.degrees.parallel or case.port_ops == "both":
        raise ParityError(
            f"parity sensitivity runs the port teacher-forced, in one process and one op mode; case {case.name} asks "
            f"for port_parallel {case.port_parallel!r}, port_ops {case.port_ops!r}"
        )
    out = Path(out) if out is not None else sensitivity_cache.out_dir(case)
    inputs = sensitivity_cache.key_inputs(case, tensors, case_file)
    key = sensitivity_cache.key(inputs)
    kept = None if force else sensitivity_cache.cached(out, key)
    if kept is not None:
        if not (out / report_html.NAME).is_file():  # kept from before the tables had a page
            write_page(out)
        return Measured(kept, out, cached=True)
    target = ReportDir(out)
    with target as staging:
        try:
            with (
                numerics.fixed(case.device, case.dtype),
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="parity-png") as png_writer,
                library_output.to_log(staging / library_output.LOG_NAME, verbose),
            ):
                session = Session(case, staging, BlockCapture(), png_writer)
                prober = Prober(session, tensors)
                unperturbed, rows = prober.run()
        except ParityError as exc:  # what failed stays readable (tracebacks, libraries.log); never a cache hit
            write_atomic(staging / "report.json", json.dumps({"kind": "sensitivity-error", "error": exc.one_line()}))
            target.commit()
            raise
        doc = json_safe(document(session, prober, unperturbed, rows, key, inputs))
        write_atomic(staging / "report.json", json.dumps(doc, indent=2, allow_nan=False) + "\n")
        write_atomic(staging / "report.md", markdown(doc))
        write_page(staging)
        target.commit()
    return Measured(doc, out, cached=False)
