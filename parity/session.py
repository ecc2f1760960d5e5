"""One parity run as one object: a Session loads each side once, runs what the mode asks for and
returns typed results (parity.results); `run_case` turns them into a RunReport and writes it.

    fixture -> runners (with taps) -> traces -> align -> compare -> verdict -> report
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import platform
import shutil
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from parity import (
    audit,
    contract,
    families,
    fixture_cache,
    frames,
    hub,
    library_output,
    numerics,
    online,
    parallel,
    progress,
    rank_merge,
    referee,
    saved_traces,
    stages,
)
from parity.align import Pair, align
from parity.capture import BlockCapture
from parity.cases import Case
from parity.compare import Check, compare
from parity.config import tool_config
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.files import write_atomic
from parity.report import write
from parity.report_dir import ReportDir
from parity.results import Comparison, ParallelResult, RunReport, combine
from parity.runners import RunInfo, RunOptions, runner_for, sglang_ranks
from parity.tolerance import Policy, one_rank_policy
from parity.trace import Key, Trace
from parity.verdict import Verdict
from parity.vocab import Mode, Outcome, Side

VERSIONED = ("parity", "torch", "diffusers", "transformers", "sglang", "numpy")
LABELS = progress.LABELS


def versions() -> dict[str, str]:
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    """Read once per process: importlib.metadata scans site-packages on every call."""
    found = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def hub_case(case: Case, timings: dict[str, float]) -> Case:
    """The case with a hub id in model_dir resolved (parity.hub): model_dir the local snapshot, model_id
    the hub id, revision the snapshot's commit, so the report says exactly which weights ran."""
    if not case.from_hub:
        return case
    assert case.model_dir is not None  # from_hub: a hub id
    asked = f" at revision {case.revision}" if case.revision else ""
    with progress.phase("hub", timings, f"model {case.model_dir}{asked}: looking in the Hugging Face cache"):
        snapshot = hub.resolve(case.model_dir, case.revision)
    progress.say(f"model {case.model_dir} at commit {snapshot.name}: {snapshot}")
    # A snapshot directory is named by its commit hash (huggingface_hub's cache layout).
    return dataclasses.replace(case, model_id=case.model_dir, model_dir=str(snapshot), revision=snapshot.name)


def model_dir_for(case: Case, timings: dict[str, float]) -> Path:
    case = hub_case(case, timings)  # a no-op for a case already resolved (Session.prepare)
    if case.model_dir is not None:
        families.read_model_index(Path(case.model_dir))  # a clear error for a non-model dir
        return Path(case.model_dir)
    with progress.phase("fixture", timings, f"fixture {case.fixture}: building or reusing cached copy"):
        path, built = fixture_cache.ensure(str(case.fixture))  # validate(): a fixture when no model_dir
    progress.say(f"fixture {'built' if built else 'cached'} at {path}")
    return path


def policy_for(case: Case, origin: str | None = None) -> Policy:
    """The tolerance policy: defaults, then `[tool.parity]` of ./pyproject.toml, then the case's own
    (`origin` names where its tolerances came from; default: the case)."""
    pyproject, tool = tool_config()
    layers = [(f"{pyproject}", tool.get("tolerance", {}))] if tool else []
    layers.append((origin or f"case {case.name}", case.tolerance))
    return Policy(case.dtype, layers, device=case.device)


def trace_bytes(trace: Trace) -> dict[str, int]:
    sizes = [(r.key.block is not None, r.value.numel() * r.value.element_size()) for r in trace]
    return {"total": sum(n for _, n in sizes), "blocks": sum(n for is_block, n in sizes if is_block)}


def _where_raised(exc: BaseException) -> str:
    """`file.py:line: source` of the frame that raised `exc`."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}: {(last.line or '').strip()}"


def _first_failing_step(checks: tuple[Check, ...]) -> int | None:
    steps = [c.step for c in checks if not c.passed and c.step is not None and c.block is None]
    return min(steps) if steps else None


def referee_target(verdict: Verdict) -> Check | None:
    """The first cause, when it is something the fp64 referee can replay: a DiT call (the
    conditional/only branch) or a DiT block, at one step."""
    first = verdict.first
    if first is None or first.step is None or stages.is_block_input(first.block):
        return None
    if first.block is not None or first.tensor in ("noise_pred_cond", "noise_pred"):
        return first
    return None


@dataclasses.dataclass(frozen=True)
class RankRun:
    """What the port's ranks reported beyond their merged trace (accumulated over reruns)."""

    tags: list[dict[str, Any]]  # each rank's place in the process groups, SGLang's degrees, its DiT's size
    agreement: list[Pair]  # whole tensors: the lowest rank's value against the most different rank's
    sharded: int  # records put together from sequence shards


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a session needs before any pipeline runs."""

    model_dir: Path
    adapter: FamilyAdapter
    policy: Policy


class Session:
    """One case: the model directory, the family adapter, the tolerance policy, each side's traces
    and what each side's runner reported. Pipelines are loaded once per process by the runners and
    reused by every run of the session (rerun, isolated, referee)."""

    # Trace names: the reference, the port on its own, the port teacher-forced, the port on native ops.
    TRACES = {"reference": Side.REFERENCE, "port": Side.PORT, "isolated": Side.PORT}

    def __init__(
        self,
        case: Case,
        out_dir: Path,
        capture: BlockCapture,
        png_writer: ThreadPoolExecutor,
        plugin_specs: tuple[str, ...] = (),
        compare_online: bool | None = None,
    ) -> None:
        self.case = case
        self.compare_online = compare_online  # None: when the capture policy asks for it (runs_online)
        self.plugin_specs = plugin_specs  # as given (files or modules): the port's rank processes import them too
        self.out_dir = out_dir
        self.capture = capture
        self.timings: dict[str, float] = {}
        self.traces = {name: Trace(side, case.device) for name, side in self.TRACES.items()}
        self.infos: dict[Side, RunInfo] = {}
        self.captured: set[int] = set()
        self.gpu_peak_mib: dict[str, float] = {}
        self._setup: Setup | None = None
        self.phase = "setup"  # what the session is doing, named in an internal error
        self._png_writer = png_writer
        self._pngs: Future | None = None
        self.ranks: RankRun | None = None  # --port-parallel: the ranks' places and what their merge found
        self.infos_one_rank: RunInfo | None = None  # --port-parallel: the port's one-rank run
        self.online: online.OnlineComparison | None = None  # the full run compared step by step
        self.contracts: dict[str, dict] = {}  # a port trace's name -> its run's Req contract (RunInfo.contract)
        self.failed_side: Side | None = None  # the side whose runner raised, if one did
        self.notes: list[str] = []  # what the session concluded beside the comparisons, for the report

    def internal_error(self, exc: Exception) -> str:
        """The one line for an exception that is parity's own fault; its traceback goes to a file."""
        write_atomic(self.out_dir / "parity-traceback.txt", traceback.format_exc())
        return (
            f"internal error in phase {self.phase!r}: {type(exc).__name__}: {exc} "
            "(a parity bug; traceback in parity-traceback.txt)"
        )

    def prepare(self) -> None:
        """The checks that need no pipeline, then the model directory (a fixture is built or reused)."""
        if self.case.device == "cuda" and not torch.cuda.is_available():
            raise ParityError("--device cuda, but torch sees no CUDA device on this machine")
        policy = policy_for(self.case)
        self.case = hub_case(self.case, self.timings)  # before the run: the report records the snapshot's commit
        model_dir = model_dir_for(self.case, self.timings)
        adapter = families.get(self.case.family) if self.case.family else families.detect(model_dir)
        self._setup = Setup(model_dir, adapter, policy)

    @property
    def prepared(self) -> bool:
        return self._setup is not None

    @property
    def setup(self) -> Setup:
        if self._setup is None:
            raise RuntimeError("Session.prepare() has not run")
        return self._setup

    @classmethod
    def over_saved(
        cls,
        case: Case,
        setup: Setup,
        traces: dict[str, Trace],
        contracts: dict[str, dict],
        png_writer: ThreadPoolExecutor,
        out_dir: Path,
    ) -> Session:
        """A session over the traces and Req contracts a run saved (parity.rejudge): `compare` judges them as
        the run's own comparison did, under `setup`'s policy; nothing is loaded or run."""
        session = cls(case, out_dir, BlockCapture(), png_writer)
        session._setup = setup
        session.traces.update(traces)
        session.contracts = dict(contracts)
        return session

    @property
    def adapter(self) -> FamilyAdapter:
        return self.setup.adapter

    # -- running one side ---------------------------------------------------------------------------

    def run_side(self, side: Side, trace: Trace, options: RunOptions, phase: str, case: Case | None = None) -> RunInfo:
        """One run of one side's pipeline into `trace`. A library's own exception becomes a
        ParityError naming the side, its traceback kept in `<side>-traceback.txt`."""
        case = case or self.case
        blocks = f", blocks at steps {sorted(options.block_steps)}" if options.block_steps else ""
        self.phase = phase
        with (
            progress.phase(phase, self.timings, f"running {LABELS[side]} on {case.device}, {case.dtype}{blocks}"),
            self._gpu_peak(phase),
        ):
            return self._call_runner(side, trace, options, case)

    @contextlib.contextmanager
    def _gpu_peak(self, phase: str) -> Iterator[None]:
        """The peak GPU memory of what runs within, the records kept on the GPU included."""
        cuda = self.case.device == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        yield
        if cuda:
            self.gpu_peak_mib[phase] = round(torch.cuda.max_memory_allocated() / 2**20, 1)

    def _call_runner(self, side: Side, trace: Trace, options: RunOptions, case: Case) -> RunInfo:
        runner = runner_for(side)
        runner.last_info = None
        try:
            return runner.run(self.setup.model_dir, case, self.adapter, trace, options)
        except BaseException as exc:
            self.failed_side = side
            if runner.last_info is not None:  # the report names what was loaded, even when it failed
                self.infos.setdefault(side, runner.last_info)
            # Ctrl-C, and a side stopped because the other failed (online), go straight up
            if isinstance(exc, (ParityError, online.Aborted)) or not isinstance(exc, Exception):
                raise
            write_atomic(self.out_dir / f"{side}-traceback.txt", traceback.format_exc())
            said = str(exc) or _where_raised(exc)  # a bare `assert` says nothing: name its line instead
            raise ParityError(
                f"{LABELS[side]} failed: {type(exc).__name__}: {said} (traceback in {side}-traceback.txt)"
            ) from exc
        finally:  # also when the port stopped: its Req is why, when it broke the contract
            self._keep_contract(trace, runner.last_info)

    def _keep_contract(self, trace: Trace, info: RunInfo | None) -> None:
        """A port run's Req contract (RunInfo.contract), by the name of the trace it filled; the first run
        into a trace wins (a rerun fills a trace of its own)."""
        name = next((n for n, t in self.traces.items() if t is trace), None)
        if info is not None and info.contract and name is not None:
            self.contracts.setdefault(name, info.contract)

    def load_side(self, side: Side) -> None:
        """Load one side's pipeline (once per process), a failure named like a failed run."""
        runner = runner_for(side)
        try:
            runner.load(self.setup.model_dir, self.case, self.adapter)
        except ParityError:
            raise
        except Exception as exc:
            write_atomic(self.out_dir / f"{side}-traceback.txt", traceback.format_exc())
            raise ParityError(
                f"{LABELS[side]} failed: {type(exc).__name__}: {exc} (traceback in {side}-traceback.txt)"
            ) from exc

    # -- comparing ------------------------------------------------------------------------------------

    def compare(self, port: str, mode: Mode, partial: bool = False) -> Comparison:
        """The trace `port` against the reference's; `partial`: a side stopped early, so only what
        both sides produced is compared."""
        label = "isolated" if mode is Mode.ISOLATED else "full"
        self.phase = "compare"
        with progress.phase("compare", self.timings, f"comparing ({label})"):
            # the denoising steps of an online run were compared as the run went
            online = self.online.checks if port == "port" and self.online is not None else []
            reference = self.traces["reference"]
            policy, dtype = self.setup.policy, self.case.dtype
            found = comparison(
                reference, self.traces[port], self.adapter, policy, dtype, mode, partial=partial, online_checks=online
            )
            extra = self.contract_checks(port)
            if not extra:
                return found
            return Comparison.judge(mode, tuple(sorted(found.checks + extra, key=Check.execution_key)), found.noise)

    # -- the Req contract (parity.contract) ------------------------------------------------------------

    def contract_expected(self, port: str) -> contract.Expected:
        """What the port's Req must hold beside its own fields: the family's prompt-embedding count, the
        seed, the port's initial latents' canonical (unpacked) shape."""
        record = self.traces[port].get(Key("latents"))
        shape = tuple(self.adapter.to_canonical(record).shape) if record is not None else None
        return contract.Expected(len(self.adapter.port.prompt_embeds), self.case.seed, shape)

    def contract_checks(self, port: str) -> tuple[Check, ...]:
        """The Req contract of the run that filled trace `port`, as checks of stage `contract`: SGLang's
        failed verifications, the fields the harness checks, and whether the initial noise is seeded."""
        view = self.contracts.get(port)
        if not view:
            return ()
        findings = contract.judge(view, self.contract_expected(port))
        if "at_draw" in view or "fields" in view:
            records = (self.traces[name].get(Key("latents")) for name in ("reference", port))
            reference, ported = (self.adapter.to_canonical(r) if r is not None else None for r in records)
            generator = view.get("fields", {}).get("generator")
            seeded = contract.seed_finding(reference, ported, self.case.seed, view.get("at_draw"), generator)
            findings += [seeded] if seeded is not None else []
        return tuple(contract.checks(findings))

    def contract_section(self, port: str) -> dict | None:
        """report.json's `contract`: the Req as observed, SGLang's verifications and the skill-vs-code warnings."""
        view = self.contracts.get(port)
        return contract.section(view, self.contract_expected(port)) if view else None

    def start_pngs(self, port: str) -> None:
        """Both sides' frames as PNG files, encoded and written in the background (the GIL is
        released there) while the comparison runs; the pixels come to the host here, once."""
        if self._pngs is not None:
            return
        pixels: list[tuple[str, Any]] = []
        for stem, name in (("reference", "reference"), ("port", port)):
            record = self.traces[name].get(Key("frames"))
            if record is not None and self.prepared:
                pixels += frames.png_pixels(self.adapter.to_canonical(record), stem)
        self._pngs = self._png_writer.submit(frames.write_pngs, pixels, self.out_dir)

    def pngs_written(self) -> list[str]:
        return self._pngs.result() if self._pngs is not None else []

    # -- what a mode runs -----------------------------------------------------------------------------

    def first_options(self) -> RunOptions:
        options = RunOptions(block_steps=self.capture.first_pass(self.case.steps))
        self.captured |= options.block_steps
        return options

    def run_reference(self, options: RunOptions) -> None:
        self.infos[Side.REFERENCE] = self.run_side(Side.REFERENCE, self.traces["reference"], options, "reference")

    def run_native(self, options: RunOptions, mode: Mode) -> Comparison:
        """`--port-ops both`: the port once on its native ops (this comparison, in the mode the main
        comparison is made in: teacher-forced for `--mode isolated`) and then, for the main verdict, on
        SGLang's own kernels (the session's case switches to kernels)."""
        self.traces["native"] = Trace(Side.PORT, self.case.device)
        native_case = dataclasses.replace(self.case, port_ops="native")
        if mode is Mode.ISOLATED:
            options = RunOptions(block_steps=frozenset(self.captured), teacher=self.traces["reference"])
        self.run_side(Side.PORT, self.traces["native"], options, "port_native", case=native_case)
        native = self.compare("native", mode)
        self.case = dataclasses.replace(self.case, port_ops="kernels")
        return native

    def runs_online(self, mode: Mode) -> bool:
        """Whether the run is compared step by step as it goes (parity.online): a full-mode run of a
        port in this process, whose blocks are captured at more steps than the default policy's, unless
        the session was told (`online`). Isolated mode and `--port-ops both` need the reference's whole
        trace (the teacher, the native comparison); ranks hand over their traces at the end."""
        eligible = mode is Mode.FULL and not self.case.degrees.parallel and self.case.port_ops != "both"
        wanted = self.capture.mode in ("all", "steps") if self.compare_online is None else self.compare_online
        return eligible and wanted

    def run_online(self, options: RunOptions) -> Comparison:
        """Both sides in turns, each denoising step compared and dropped once both made it
        (parity.online): the records held stay a step or two, whatever the step count."""
        comparison = online.OnlineComparison(self.adapter, self.setup.policy, self.case.device)
        self.online = comparison
        self.traces["reference"], self.traces["port"] = (comparison.traces[s] for s in (Side.REFERENCE, Side.PORT))
        for phase, side in (("reference_load", Side.REFERENCE), ("port_load", Side.PORT)):
            self.phase = phase
            with progress.phase(phase, self.timings, f"loading {LABELS[side]}"):
                self.load_side(side)
        self.phase = "online"
        blocks = f"blocks at steps {sorted(options.block_steps)}" if options.block_steps else "no blocks"
        note = f"running both sides in turns on {self.case.device}, {self.case.dtype}, {blocks}, compared step by step"
        calls = {
            side: functools.partial(self._call_runner, side, comparison.traces[side], options, self.case)
            for side in online.SIDES
        }
        try:
            with progress.phase("online", self.timings, note), self._gpu_peak("online"):
                self.infos.update(comparison.run(calls))
        finally:
            self.timings.update({str(side): round(s, 3) for side, s in comparison.turns.seconds.items()})
        self.start_pngs("port")
        return self.compare("port", Mode.FULL)

    def run_full(self, options: RunOptions) -> Comparison:
        if self.case.degrees.parallel:
            return self.run_parallel(options)
        self.infos[Side.PORT] = self.run_side(Side.PORT, self.traces["port"], options, "port")
        self.start_pngs("port")
        return self.compare("port", Mode.FULL)

    # -- the port in several ranks (--port-parallel) ----------------------------------------------------

    def run_parallel(self, options: RunOptions) -> Comparison:
        """The port at one rank (in this process), then in its ranks (merged into the `port` trace):
        the ranks are compared with the reference (the run's verdict) and with the one-rank run."""
        one_rank = dataclasses.replace(self.case, port_parallel="1")
        self.traces["one_rank"] = Trace(Side.PORT, self.case.device)
        self.infos_one_rank = self.run_side(Side.PORT, self.traces["one_rank"], options, "port_one_rank", case=one_rank)
        self.run_ranks(self.traces["port"], options, "port")
        self.start_pngs("port")
        return self.compare("port", Mode.FULL)

    def run_ranks(self, trace: Trace, options: RunOptions, phase: str) -> None:
        """The port's rank processes (parity.runners.sglang_ranks), merged into `trace` (parity.rank_merge)."""
        degrees = self.case.degrees
        spec = self.adapter.port.sequence_shards
        work_dir = self.out_dir / ".ranks"
        self.phase = phase
        note = f"running {LABELS[Side.PORT]} in {degrees.world_size} ranks ({degrees.describe()}) on {self.case.device}"
        with progress.phase(phase, self.timings, f"{note}, {self.case.dtype}"):
            try:
                ranks, infos = sglang_ranks.run(
                    self.setup.model_dir, self.case, self.adapter, options, list(self.plugin_specs), work_dir
                )
            finally:
                for kept in work_dir.glob("port-rank*-traceback.txt"):
                    kept.replace(self.out_dir / kept.name)
                shutil.rmtree(work_dir, ignore_errors=True)
        one_rank = self.traces["one_rank"]

        def one_rank_length(key: Key) -> int | None:
            record = one_rank.get(key)
            return record.value.shape[spec.dim] if record is not None and record.value.ndim > spec.dim else None

        merged = rank_merge.merge(ranks, spec.may_shard, spec.dim, one_rank_length)
        trace.extend(merged.trace)
        self.infos[Side.PORT] = infos[0]
        self._keep_contract(trace, infos[0])
        previous = self.ranks
        self.ranks = RankRun(
            tags=[{**r.tags, **info.parallel} for r, info in zip(ranks, infos, strict=True)],
            agreement=(previous.agreement if previous else []) + merged.agreement,
            sharded=(previous.sharded if previous else 0) + len(merged.sharded),
        )

    def compare_parallel(self) -> ParallelResult:
        """The merged ranks against the one-rank run, and rank against rank, at the one-rank tolerances."""
        assert self.ranks is not None
        self.phase = "compare"
        with progress.phase("compare", self.timings, "comparing the ranks with the one-rank port"):
            policy = one_rank_policy(self.case.dtype, self.case.device)
            pairs = align(self.traces["one_rank"], self.traces["port"], self.adapter)
            judged = [compare(pairs, policy), compare(self.ranks.agreement, policy)]
            vs_one_rank, agreement = (
                Comparison.judge(Mode.FULL, tuple(sorted(c, key=Check.execution_key))) for c in judged
            )
        one_rank = self.infos_one_rank.parallel.get("dit_parameters") if self.infos_one_rank else None
        return ParallelResult(
            self.case.degrees.as_dict(), self.ranks.tags, self.ranks.sharded, vs_one_rank, agreement, one_rank
        )

    def rerun_blocks(self, full: Comparison) -> Comparison:
        """The blocks of the first failing step, when the capture policy did not record them: both
        sides run again capturing only that step (the runs are deterministic), so memory never holds
        more than the policy's steps."""
        rerun = self.capture.second_pass(frozenset(self.captured), _first_failing_step(full.checks))
        if not rerun:
            return full
        progress.say(f"first failing step {min(rerun)} was not block-captured: running both sides again")
        self.captured |= rerun
        parallel = self.case.degrees.parallel
        names = [("reference", Side.REFERENCE), *([("one_rank", Side.PORT)] if parallel else []), ("port", Side.PORT)]
        for name, side in names:
            again = Trace(side, self.case.device)
            if name == "port" and parallel:
                self.run_ranks(again, RunOptions(block_steps=rerun), "port_rerun")
            else:
                one_rank = dataclasses.replace(self.case, port_parallel="1") if name == "one_rank" else None
                self.run_side(side, again, RunOptions(block_steps=rerun), f"{name}_rerun", case=one_rank)
            self.traces[name].extend(r for r in again if r.key.block is not None)
        return self.compare("port", Mode.FULL)

    def run_isolated(self, main: bool) -> Comparison:
        """The port teacher-forced on the reference's values, blocks on the steps captured so far."""
        teacher = RunOptions(block_steps=frozenset(self.captured), teacher=self.traces["reference"])
        self.infos[Side.PORT] = self.run_side(Side.PORT, self.traces["isolated"], teacher, "port_isolated")
        if main:
            self.start_pngs("isolated")
        return self.compare("isolated", Mode.ISOLATED)

    def replay_runs(self, options: RunOptions, phase: str) -> tuple[Trace, Trace]:
        """The reference, then the port teacher-forced on it, each run with `options`' float64 replays (the
        referee's, the audit's): phases `<phase>_reference`, `<phase>_port`. The run's records leave the GPU
        first: its memory is for the float64 replay."""
        for trace in self.traces.values():
            trace.move_to("cpu")
        reference = Trace(Side.REFERENCE, self.case.device)
        self.run_side(Side.REFERENCE, reference, options, f"{phase}_reference")
        port = Trace(Side.PORT, self.case.device)
        self.run_side(Side.PORT, port, dataclasses.replace(options, teacher=reference), f"{phase}_port")
        return reference, port

    def referee(self, target: Check) -> referee.Judgement | dict[str, str]:
        """Replay the target's component in float64 on both sides (the port teacher-forced) and judge
        (parity.referee); a dict saying why when there is nothing to judge."""
        if target.tensor == "noise_pred" and self.case.cfg_enabled:
            return {"skipped": "under CFG the guided noise_pred is the CFG combine, not a DiT call"}
        step = target.step
        assert step is not None  # referee_target picks checks of one step
        replay = RunOptions(block_steps=frozenset({step}), replay_step=step, replay_block=target.block)
        reference, port = self.replay_runs(replay, "referee")
        keys = [Key(target.tensor, step, target.block), Key(target.tensor + referee.FP64, step, target.block)]
        found = [trace.get(key) for trace in (reference, port) for key in keys]
        records = [r for r in found if r is not None]
        if len(records) < len(found):
            return {"skipped": f"the fp64 replay recorded no {target.label()}"}
        values = [self.adapter.to_canonical(r) for r in records]
        return referee.judge(target.tensor, step, target.block, values[0], values[2], values[1], values[3])

    def audit(self) -> list[Check]:
        """`--audit fp64` (parity.audit): the first step's DiT call replayed in float64 on both sides with
        every block recorded, the port teacher-forced and each of its blocks run in float64 on the
        reference's float64 input; one `audit` check per component."""
        step = 0
        reference, port = self.replay_runs(RunOptions(replay_step=step, audit=True), "audit")  # blocks: replays only
        pairs = [(p.key.tensor, p.key.block, p.reference, p.port) for p in align(reference, port, self.adapter)]
        return audit.checks(audit.components(pairs), step, self.setup.policy)

    def report(
        self,
        mode: Mode,
        main: Comparison,
        found: Outcomes,
        referee: dict | None,
        fixed: dict[str, str],
        plugins: list[str],
    ) -> RunReport:
        """The RunReport of the session's runs: `main` is the comparison the run is judged on."""
        isolated = found.isolated  # None in full mode: its isolated trace stays empty
        verdict, decided_by = combine(main, isolated, found.parallel)
        case = self.case
        return RunReport(
            mode=mode,
            case=case.as_dict(),
            main=main,
            verdict=verdict,
            decided_by=decided_by,
            family=self.adapter.name if self.prepared else None,
            versions=versions(),
            pipelines={side: info.pipeline for side, info in self.infos.items()},
            components={side: info.components for side, info in self.infos.items()},
            plugins=plugins,
            port_ops=self.infos[Side.PORT].port_ops if Side.PORT in self.infos else None,
            capture={
                "block_policy": self.capture.describe(),
                "block_steps": sorted(self.captured),
                "block_branch": "conditional",
                **({"online": self.online.describe()} if self.online is not None else {}),
            },
            referee=referee,
            frames_png=self.pngs_written(),
            trace_bytes={name: trace_bytes(trace) for name, trace in self.traces.items() if len(trace)},
            native=found.native,
            isolated=isolated,
            parallel=found.parallel,
            cfg=case.cfg_enabled,
            timings_s=self.timings,
            gpu_peak_mib=self.gpu_peak_mib or None,
            device_numerics=fixed or None,
            notes=([f"expected to fail: {case.reason}"] if case.expected_for() == "fail" else [])
            + [n for info in self.infos.values() for n in info.notes]
            + self.notes,
            contract=self.contract_section("isolated" if main.mode is Mode.ISOLATED else "port"),
        )


def comparison(
    reference: Trace,
    port: Trace,
    adapter: FamilyAdapter,
    policy: Policy,
    dtype: str,
    mode: Mode,
    *,
    partial: bool = False,
    online_checks: list[Check] | tuple[Check, ...] = (),
) -> Comparison:
    """A port trace against the reference's: aligned, compared, the frames judged, the verdict decided.
    `partial`: a side stopped early, so only what both sides produced is compared. What a run and
    `parity rejudge` (saved traces) both judge by."""
    pairs = align(reference, port, adapter)
    if partial:
        pairs = [p for p in pairs if p.reference is not None and p.port is not None]
    found = compare(pairs, policy) + list(online_checks)
    noise = None
    reference_record, port_record = (trace.get(Key("frames")) for trace in (reference, port))
    if reference_record is not None and port_record is not None:
        reference_frames, port_frames = (adapter.to_canonical(r) for r in (reference_record, port_record))
        extra, noise = frames.checks(reference_frames, port_frames, dtype, len(found))
        found += extra
    return Comparison.judge(mode, tuple(sorted(found, key=Check.execution_key)), noise)


@dataclasses.dataclass
class Outcomes:
    """What a session's runs produced: each mode's comparison, and the error that stopped them."""

    full: Comparison | None = None
    isolated: Comparison | None = None
    native: Comparison | None = None
    parallel: ParallelResult | None = None
    error: str | None = None


def execute(session: Session, mode: Mode) -> Outcomes:
    """Run what `mode` asks for. A ParityError stops the runs and becomes the outcome's `error`,
    with what both sides produced so far compared."""
    found = Outcomes()
    try:
        parallel.check_run(session.case.degrees, mode, session.case.port_ops)
        session.prepare()
        options = session.first_options()
        if session.runs_online(mode):
            found.full = session.run_online(options)
            return found
        session.run_reference(options)
        if session.case.port_ops == "both":
            found.native = session.run_native(options, Mode.ISOLATED if mode is Mode.ISOLATED else Mode.FULL)
        if mode is not Mode.ISOLATED:
            found.full = session.rerun_blocks(session.run_full(options))
            if session.ranks is not None:
                found.parallel = session.compare_parallel()
        if mode is not Mode.FULL:
            found.isolated = session.run_isolated(main=mode is Mode.ISOLATED)
    except Exception as exc:
        # Not a divergence: a side that could not run (ParityError), or a fault in parity itself,
        # whose traceback is kept in the report directory. Either way the run's verdict is `error`.
        found.error = exc.one_line() if isinstance(exc, ParityError) else session.internal_error(exc)
        ran = {name: len(session.traces[name]) or name in session.contracts for name in ("port", "isolated")}
        if session.prepared and found.full is None and (ran["port"] or session.online):
            found.full = session.compare("port", Mode.FULL, partial=True)
        if session.prepared and found.isolated is None and ran["isolated"]:
            found.isolated = session.compare("isolated", Mode.ISOLATED, partial=True)
        broken = [c for run in (found.full, found.isolated) if run for c in run.checks if c.stage == stages.CONTRACT]
        if session.failed_side is Side.PORT and any(not c.passed for c in broken):
            # A port that broke its Req contract and then stopped (SGLang's StageVerificationError, or a crash
            # the malformed field caused deeper in) fails at the contract: a divergence, not a setup error.
            session.notes.append(f"the port stopped after breaking its Req contract: {found.error}")
            found.error = None
    return found


def with_referee(session: Session, main: Comparison) -> tuple[Comparison, dict | None]:
    """`--referee fp64` on a failing run: the judgement for the report, and the main comparison as
    the referee leaves it (failures of an equivalent component passed as `referee_equivalent`)."""
    target = referee_target(main.verdict)
    if target is None:
        first = main.verdict.first.label() if main.verdict.first else "none"
        return main, {"skipped": f"the fp64 referee replays DiT calls and DiT blocks; the first cause is {first}"}
    try:
        judgement = session.referee(target)
    except ParityError as exc:
        return main, {"skipped": f"fp64 replay failed: {exc.one_line()}"}
    if isinstance(judgement, dict):
        return main, judgement
    return Comparison.judge(main.mode, referee.apply(main.checks, judgement), main.noise), judgement.as_dict()


def with_audit(session: Session, main: Comparison) -> tuple[Comparison, dict]:
    """`--audit fp64`: the main comparison with the audit's checks added (a flag fails the verdict),
    and report.json's `audit` section."""
    if main.verdict.outcome is Outcome.ERROR:
        return main, {"mode": "fp64", "skipped": "the run stopped with an error"}
    if session.ranks is not None:
        return main, {"mode": "fp64", "skipped": "the audit replays the port in one process, not in its ranks"}
    started = time.perf_counter()
    try:
        found = session.audit()
    except ParityError as exc:
        return main, {"mode": "fp64", "skipped": f"float64 replay failed: {exc.one_line()}"}
    seconds = time.perf_counter() - started
    plain = sum(session.timings.get(phase, 0.0) for phase in ("reference", "port", "online")) or None
    found = [dataclasses.replace(c, order=len(main.checks) + i) for i, c in enumerate(found)]
    checks = tuple(sorted((*main.checks, *found), key=Check.execution_key))
    return Comparison.judge(main.mode, checks, main.noise), audit.summary(found, seconds, plain)


def run_case(
    case: Case,
    out_dir: Path,
    plugins: tuple[str, ...] | list[str] = (),
    capture: BlockCapture | None = None,
    mode: Mode | str = Mode.FULL,
    referee_mode: str | None = None,
    verbose: bool = False,
    plugin_specs: tuple[str, ...] | list[str] = (),
    compare_online: bool | None = None,
    save_traces: bool = False,
    audit_mode: str | None = None,
) -> RunReport:
    """Run both sides, compare, judge and write the report into `out_dir`, replacing what was there
    as a whole (parity.report_dir). Never raises ParityError: an error becomes verdict `error` with
    whatever was already compared in the report.

    mode `full`: the port runs on its own and the first divergence is the earliest failure.
    mode `isolated`: the port runs teacher-forced on the reference's values, so every component is
    judged on its own; `both` does the two and reports the isolated table beside the full run.
    referee_mode `fp64`: when the run fails, replay the first cause in float64 (parity.referee).
    audit_mode `fp64`: replay the first step's DiT call and blocks in float64 on both sides and fail on
    any difference float64 rounding cannot explain (parity.audit).
    verbose: the libraries print to the console instead of `libraries.log` in the report.
    plugin_specs: the plugins as given (files or modules, already imported here): the port's rank
    processes (--port-parallel) import them too; `plugins` are the names the report lists.
    compare_online: compare the full run step by step as it goes (parity.online) or from whole traces;
    None: step by step when blocks are captured at more steps than the default policy's.
    save_traces: also write every trace into `out_dir`/traces (parity.saved_traces). An online comparison
    drops each step's records once compared, so with it the run is compared from whole traces instead
    (the same checks; the records held grow with steps x captured blocks), and the report says so.
    """
    mode = Mode(mode)
    notes = []
    target = ReportDir(out_dir)
    with target as staging:
        with (
            numerics.fixed(case.device, case.dtype) as fixed,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="parity-png") as png_writer,
            library_output.to_log(staging / library_output.LOG_NAME, verbose),
        ):
            session = Session(case, staging, capture or BlockCapture(), png_writer, tuple(plugin_specs), compare_online)
            if save_traces and session.runs_online(mode):
                notes.append(
                    "--save-traces: compared from whole traces, not online (an online comparison drops each step's "
                    "records once compared); the records held grew with the steps and captured blocks"
                )
                progress.say(notes[-1])
                session.compare_online = False
            found = execute(session, mode)
            main_mode = Mode.ISOLATED if mode is Mode.ISOLATED else Mode.FULL
            main = found.isolated if main_mode is Mode.ISOLATED else found.full
            main = Comparison.judge(main_mode, main.checks if main else (), main.noise if main else None, found.error)
            judged = None
            if referee_mode == "fp64" and main.verdict.outcome is Outcome.FAIL and session.ranks is not None:
                judged = {"skipped": "the fp64 referee replays the port in one process, not in its ranks"}
            elif referee_mode == "fp64" and main.verdict.outcome is Outcome.FAIL:
                main, judged = with_referee(session, main)
            audited = None
            if audit_mode == "fp64":
                main, audited = with_audit(session, main)
            session.start_pngs("isolated" if main_mode is Mode.ISOLATED else "port")  # a run that stopped early
            report = session.report(mode, main, found, judged, fixed, list(plugins))
            report.audit = audited
            report.notes += notes
        progress.say(f"writing report to {out_dir}")
        if save_traces:  # what was recorded, also when the run stopped early
            try:
                where = staging / saved_traces.DIRNAME
                report.capture["saved_traces"] = saved_traces.save(session.traces, where, session.contracts)
            except Exception as exc:  # the report is still worth writing
                report.notes.append(f"--save-traces: the traces could not be saved: {type(exc).__name__}: {exc}")
        write(staging, report)
        target.commit()
        return report
