"""What a run concludes across its comparisons (--mode both, --port-ops both), on synthetic checks:
roles, causes and hints always come from the comparison the verdict is taken from."""

import torch

from parity import stages
from parity.align import Pair
from parity.compare import compare
from parity.results import Comparison, RunReport, combine, port_ops_both
from parity.tolerance import Policy
from parity.trace import Key
from parity.vocab import Mode, Outcome, Role

G = torch.Generator().manual_seed(0)
X = torch.randn(4, 8, generator=G)


def comparison(mode, *failing_steps, blocks=False):
    """noise_pred at steps 0..2, failing (x1.02) at `failing_steps`; with `blocks`, a passing block before each."""
    pairs = []
    for step in range(3):
        if blocks:
            pairs.append(Pair(Key("hidden_states", step, "transformer_blocks.0"), stages.DENOISING, X, X))
        port = X * 1.02 if step in failing_steps else X
        pairs.append(Pair(Key("noise_pred", step), stages.DENOISING, X, port))
    return Comparison.judge(mode, tuple(compare(pairs, Policy("float32"))))


def report(main, isolated=None, native=None, mode=None):
    mode = mode or (Mode.BOTH if isolated is not None and main.mode is Mode.FULL else main.mode)
    verdict, decided_by = combine(main, isolated if mode is Mode.BOTH else None)
    return RunReport(mode, {"name": "t"}, main, verdict, decided_by, native=native, isolated=isolated)


def test_isolated_roles_make_every_failure_a_cause_and_the_rows_agree_with_causes():
    isolated = comparison(Mode.ISOLATED, 0, 1, 2)
    doc = report(isolated, isolated=isolated).as_json()
    causes = [(c["tensor"], c["step"]) for c in doc["causes"]]
    assert causes == [("noise_pred", 0), ("noise_pred", 1), ("noise_pred", 2)]
    assert [(r["tensor"], r["step"]) for r in doc["checks"] if r["role"] == Role.CAUSE] == causes


def test_port_ops_both_judges_the_kernel_run_in_its_own_mode():
    # An isolated kernel run that fails at every step, beside a clean native run: the rows, the causes
    # and the port_ops_both section must all read the isolated classification (three causes).
    kernels, native = comparison(Mode.ISOLATED, 0, 1, 2), comparison(Mode.ISOLATED)
    doc = report(kernels, isolated=kernels, native=native, mode=Mode.ISOLATED).as_json()
    assert doc["port_ops_both"]["kernels"] == "fail" and doc["port_ops_both"]["native"] == "pass"
    assert doc["port_ops_both"]["mode"] == "isolated"
    assert "but not on its native ops" in doc["port_ops_both"]["conclusion"]
    assert sum(r["role"] == Role.CAUSE for r in doc["checks"]) == len(doc["causes"]) == 3
    assert all(r["role"] != Role.DOWNSTREAM for r in doc["checks"])


def blocks_comparison(mode, failing_step=None):
    """Per step: DiT inputs, two blocks, noise_pred; block 1 off by 1 % at `failing_step` (inputs equal)."""
    pairs = []
    for step in range(3):
        pairs += [Pair(Key(t, step), stages.DENOISING, X, X) for t in ("dit_input", "dit_timestep")]
        for index in range(2):
            port = X * 1.01 if (step, index) == (failing_step, 1) else X
            pairs.append(Pair(Key("hidden_states", step, f"transformer_blocks.{index}"), stages.DENOISING, X, port))
        pairs.append(Pair(Key("noise_pred", step), stages.DENOISING, X, X))
    return Comparison.judge(mode, tuple(compare(pairs, Policy("float32"))))


def test_mode_both_taken_from_the_isolated_run_reports_its_causes_and_hints():
    full, isolated = blocks_comparison(Mode.FULL), blocks_comparison(Mode.ISOLATED, failing_step=1)
    doc = report(full, isolated=isolated).as_json()
    assert doc["verdict"] == Outcome.FAIL and doc["decided_by"] == "isolated"
    where = {"stage": "denoising", "tensor": "hidden_states", "step": 1, "block": "transformer_blocks.1"}
    assert doc["first_divergence"] == where and doc["causes"] == [where]
    # The hint reads the isolated run's checks, where the divergence is (the full run has no cause).
    [hint] = doc["hints"]
    assert hint["at"] == "denoising/hidden_states step 1 block transformer_blocks.1"
    assert "transformer_blocks.1 itself" in hint["likely_cause"]
    failing = [r for r in doc["isolated"]["checks"] if not r["passed"]]
    assert [(r["tensor"], r["step"], r["block"], r["role"]) for r in failing] == [
        ("hidden_states", 1, "transformer_blocks.1", Role.CAUSE)
    ]
    assert all(r["passed"] and r["role"] is None for r in doc["checks"])


def test_mode_both_keeps_the_full_verdict_when_it_fails_or_both_pass():
    full, isolated = comparison(Mode.FULL, 2), comparison(Mode.ISOLATED, 1)
    verdict, decided_by = combine(full, isolated)
    assert decided_by is full and verdict.first.step == 2
    clean_full, clean_isolated = comparison(Mode.FULL), comparison(Mode.ISOLATED)
    verdict, decided_by = combine(clean_full, clean_isolated)
    assert verdict.outcome == Outcome.PASS and decided_by is clean_full
    assert "decided_by" not in report(clean_full, isolated=clean_isolated).as_json()


def test_port_ops_both_conclusions():
    fail, clean = comparison(Mode.FULL, 0), comparison(Mode.FULL)
    assert "in a kernel" in port_ops_both(fail.verdict, clean.verdict, Mode.FULL)["conclusion"]
    assert "native ops too" in port_ops_both(fail.verdict, fail.verdict, Mode.FULL)["conclusion"]
    assert "passes on both" in port_ops_both(clean.verdict, clean.verdict, Mode.FULL)["conclusion"]
    errored = Comparison.judge(Mode.FULL, clean.checks, error="SGLang failed")
    conclusion = port_ops_both(errored.verdict, clean.verdict, Mode.FULL)["conclusion"]
    assert "could not run on its kernels (SGLang failed)" in conclusion


def parallel_report(main, vs_one_rank, agreement):
    from parity.results import ParallelResult

    degrees = {"tp": 1, "ulysses": 2, "ring": 1, "kvgather": 1, "cfg": 1, "sp": 2, "world_size": 2}
    ranks = [{"rank": r, "tp": 0, "sp": r, "ulysses": r, "ring": 0, "cfg": 0} for r in range(2)]
    parallel = ParallelResult(degrees, ranks, 3, vs_one_rank, agreement, 1000)
    verdict, decided_by = combine(main, None, parallel)
    return RunReport(
        Mode.FULL, {"name": "t", "port_parallel": "ulysses=2"}, main, verdict, decided_by, parallel=parallel
    )


def test_ranks_that_match_the_reference_but_not_their_one_rank_run_fail_on_that_comparison():
    clean, broken = comparison(Mode.FULL), comparison(Mode.FULL, 1)
    run = parallel_report(clean, broken, clean)
    doc = run.as_json()
    assert run.verdict.outcome is Outcome.FAIL and doc["decided_by"] == "parallel.vs_one_rank"
    assert doc["first_divergence"]["step"] == 1
    assert doc["parallel"]["vs_one_rank"]["first_divergence"]["step"] == 1
    assert "the parallel path is to blame" in doc["parallel"]["conclusion"]
    assert doc["parallel"]["world_size"] == 2 and doc["parallel"]["sharded_records"] == 3


def test_ranks_that_disagree_are_blamed_before_the_one_rank_comparison():
    clean = comparison(Mode.FULL)
    doc = parallel_report(clean, comparison(Mode.FULL, 0), comparison(Mode.FULL, 0)).as_json()
    assert doc["decided_by"] == "parallel.rank_agreement"
    assert doc["parallel"]["conclusion"].startswith("the ranks disagree on denoising/noise_pred step 0")


def test_a_divergence_from_the_reference_that_the_one_rank_run_shares_is_the_ports_own():
    clean, broken = comparison(Mode.FULL), comparison(Mode.FULL, 2)
    run = parallel_report(broken, clean, clean)
    doc = run.as_json()
    assert run.decided_by is run.main and "decided_by" not in doc
    assert "matches its one-rank run; its divergence from the reference" in doc["parallel"]["conclusion"]
    assert doc["parallel"]["vs_one_rank"]["verdict"] == "pass"
