"""The port in several rank processes (`--port-parallel`), as SGLang runs it on several GPUs.

The parent starts one process per rank (torch.multiprocessing, spawn) with RANK / LOCAL_RANK /
WORLD_SIZE / MASTER_ADDR / MASTER_PORT set; each imports the `--plugin`s (a fault plugin must reach
the ranks), builds SGLang's native pipeline with the case's degrees (every one explicit: see
parity.parallel), runs the case with the usual taps and writes its trace and its place in the
process groups (tp / sp / ulysses / ring / cfg rank) to the work directory as safetensors + JSON
(nothing is pickled). CPU ranks use gloo, which SGLang picks itself; a CUDA rank runs on GPU
`LOCAL_RANK` over NCCL. The parent reads the traces back; parity.rank_merge makes one of them.

A rank that fails ends the run: the others are stopped (they would wait in a collective for ever),
and the error names the rank, its message, and the file with its traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing

from parity import progress
from parity.cases import Case
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.interrupts import checkpoint
from parity.rank_merge import RankTrace
from parity.runners import RunInfo, RunOptions
from parity.trace import Trace

TIMEOUT_S = float(os.environ.get("PARITY_RANK_TIMEOUT_S", "1800"))  # a rank stuck in a collective
_GRACE_S = 10.0  # after the first rank fails, how long the others get to end before they are killed


def run(
    model_dir: Path, case: Case, adapter: FamilyAdapter, options: RunOptions, plugins: list[str], work_dir: Path
) -> tuple[list[RankTrace], list[RunInfo]]:
    """Every rank's trace and RunInfo, in rank order. ParityError if a rank fails or does not finish."""
    from parity.runners.sglang_runner import free_port

    degrees = case.degrees
    work_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "model_dir": str(model_dir),
        "case": case.as_dict(),
        "family": adapter.name,
        "plugins": list(plugins),
        "block_steps": sorted(options.block_steps),
        "world_size": degrees.world_size,
        "master_port": free_port(),
        "work_dir": str(work_dir),
    }
    context = torch.multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=rank_main, args=(rank, spec), name=f"parity-rank{rank}")
        for rank in range(degrees.world_size)
    ]
    try:
        for process in processes:
            process.start()
        _wait(processes, work_dir)
    finally:
        _stop(processes)
    results, infos = [], []
    for rank in range(degrees.world_size):
        done = json.loads((work_dir / f"rank{rank}.json").read_text())
        trace = Trace.load(work_dir / f"rank{rank}.safetensors", case.device)
        results.append(RankTrace(done["tags"], trace))
        infos.append(RunInfo(**done["info"]))
    return results, infos


def _wait(processes: list[Any], work_dir: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    running = list(processes)
    while running:
        # In short waits: each ends at a safe point for Ctrl-C (parity.interrupts).
        ready = wait([p.sentinel for p in running], timeout=min(0.5, max(0.0, deadline - time.monotonic())))
        checkpoint()
        if not ready and time.monotonic() < deadline:
            continue
        if not ready:
            raise ParityError(
                f"port ranks {[p.name for p in running]} did not finish in {TIMEOUT_S:.0f} s (PARITY_RANK_TIMEOUT_S)"
            )
        for process in [p for p in running if p.sentinel in ready]:
            process.join()
            running.remove(process)
            if process.exitcode != 0:
                raise ParityError(_failure(process, work_dir))


def _failure(process: Any, work_dir: Path) -> str:
    rank = int(process.name.removeprefix("parity-rank"))
    error = work_dir / f"rank{rank}.error.json"
    if error.is_file():
        found = json.loads(error.read_text())
        return f"SGLang (port) rank {rank} failed: {found['message']} (traceback in {found['traceback_file']})"
    return f"SGLang (port) rank {rank} ended with exit code {process.exitcode} and no message (killed?)"


def _stop(processes: list[Any]) -> None:
    """Every rank still running is asked to stop, then killed."""
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.terminate()
    deadline = time.monotonic() + _GRACE_S
    for process in alive:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def rank_main(rank: int, spec: dict[str, Any]) -> None:
    """One rank's process (the spawn target): run the case, write the trace and the rank's place."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the ranks
    progress.quiet = True  # the parent announces the ranks' run: N ranks' step lines would only interleave
    work_dir = Path(spec["work_dir"])
    world = int(spec["world_size"])
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(spec["master_port"]),
    )
    try:
        tags, trace, info = _run_rank(rank, spec)
        trace.save(work_dir / f"rank{rank}.safetensors")
        done = {
            "tags": tags,
            "info": {
                k: getattr(info, k) for k in ("pipeline", "components", "notes", "port_ops", "parallel", "contract")
            },
        }
        (work_dir / f"rank{rank}.json").write_text(json.dumps(done))
    except BaseException as exc:  # the parent reads the message; the traceback is kept beside the report
        traceback_file = f"port-rank{rank}-traceback.txt"
        (work_dir / traceback_file).write_text(traceback.format_exc())
        message = exc.one_line() if isinstance(exc, ParityError) else f"{type(exc).__name__}: {exc}"
        (work_dir / f"rank{rank}.error.json").write_text(
            json.dumps({"message": message, "traceback_file": traceback_file})
        )
        sys.exit(1)


def _run_rank(rank: int, spec: dict[str, Any]) -> tuple[dict[str, int], Trace, RunInfo]:
    from parity import families, plugins
    from parity.runners.sglang_runner import SGLangRunner, rank_tags

    case = Case(**spec["case"])
    if case.device == "cuda":
        torch.cuda.set_device(rank)
    elif "OMP_NUM_THREADS" not in os.environ:  # the ranks share the machine's cores, as SGLang's CPU workers do
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(spec["world_size"])))
    plugins.load_all(spec["plugins"])
    adapter = families.get(spec["family"])
    model_dir = Path(spec["model_dir"])
    runner = SGLangRunner()
    runner.load(model_dir, case, adapter)  # builds the process groups
    tags = rank_tags()
    options = RunOptions(block_steps=frozenset(spec["block_steps"]), cfg_rank=tags["cfg"], cfg_degree=case.degrees.cfg)
    trace = Trace("port", case.device)
    info = runner.run(model_dir, case, adapter, trace, options)
    return tags, trace, info
