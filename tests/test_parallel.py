"""--port-parallel: the degrees a user writes, what SGLang is told, and what a run refuses up front."""

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity import parallel
from parity.cases import Case
from parity.errors import ParityError
from parity.parallel import Degrees


def test_one_rank_by_default_and_for_empty_or_1():
    for text in ("", "1", " 1 "):
        assert parallel.parse(text) == parallel.ONE_RANK
    assert not Degrees().parallel and Degrees().world_size == 1 and Degrees().describe() == "1"


@pytest.mark.parametrize(
    ("text", "world", "sp"),
    [
        ("tp=2", 2, 1),
        ("ulysses=2", 2, 2),
        ("kvgather=2", 2, 2),
        ("cfg=2", 2, 1),
        ("tp=2,ulysses=2", 4, 2),
        ("TP=2, cfg=2", 4, 1),
    ],
)
def test_the_world_size_is_the_product_of_the_degrees(text, world, sp):
    degrees = parallel.parse(text)
    assert degrees.world_size == world and degrees.sp == sp and degrees.parallel


def test_every_sglang_degree_is_set_explicitly():
    """Left unset, SGLang picks for itself: sp_degree=2 alone means K/V-gather, two GPUs turn CFG-parallel on."""
    ulysses = parallel.parse("ulysses=2").server_args()
    assert ulysses == {
        "num_gpus": 2,
        "tp_size": 1,
        "sp_degree": 2,
        "ulysses_degree": 2,
        "ring_degree": 1,
        "kv_gather_degree": 1,
        "enable_cfg_parallel": False,
        "cfg_parallel_degree": 1,
    }
    kvgather = parallel.parse("kvgather=2").server_args()
    assert kvgather["kv_gather_degree"] == 2 and kvgather["sp_degree"] == 2
    assert kvgather["ulysses_degree"] is None  # SGLang refuses ulysses > 1 beside K/V-gather and aliases it itself
    assert parallel.parse("cfg=2").server_args()["enable_cfg_parallel"] is True
    assert parallel.ONE_RANK.server_args()["num_gpus"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tp=two", "tp must be an integer >= 1, got 'two'"),
        ("tp=0", "tp must be an integer >= 1"),
        ("pp=2", "unknown degree 'pp'; known: tp, ulysses, ring, kvgather, cfg"),
        ("tp=2,tp=2", "tp given twice"),
        ("cfg=4", "cfg=2 at most"),
        ("kvgather=2,ulysses=2", "K/V-gather does not compose with ulysses or ring"),
        ("ring=2", "run it with --device cuda"),
    ],
)
def test_bad_degrees_are_one_clear_line(text, message):
    with pytest.raises(ParityError, match=message.replace("(", r"\(")):
        parallel.parse(text)


def test_ring_runs_on_cuda_only():
    assert parallel.parse("ring=2", device="cuda").sp == 2
    with pytest.raises(ParityError, match="softmax LSE"):
        parallel.parse("ring=2", device="cpu")


@given(st.dictionaries(st.sampled_from(parallel.NAMES), st.integers(1, 4), min_size=1))
def test_describe_parses_back_to_the_same_degrees(values):
    degrees = Degrees(**values)
    try:
        parallel.check(degrees, "cuda")
    except ParityError:
        return
    assert parallel.parse(degrees.describe(), "cuda") == degrees


def test_a_multi_rank_run_is_full_mode_with_one_op_mode():
    tp = parallel.parse("tp=2")
    parallel.check_run(tp, "full", "auto")
    with pytest.raises(ParityError, match="--mode full only"):
        parallel.check_run(tp, "both", "auto")
    with pytest.raises(ParityError, match="one op mode"):
        parallel.check_run(tp, "full", "both")
    parallel.check_run(parallel.ONE_RANK, "isolated", "both")  # one rank: anything goes


def test_the_case_key_is_checked_with_the_case():
    base = dict(name="c", family="flux", fixture="flux_tiny")
    assert Case(**base, port_parallel="tp=2").validate().degrees.tp == 2
    with pytest.raises(ParityError, match='port_parallel "tp=x": tp must be an integer'):
        Case(**base, port_parallel="tp=x").validate()
    with pytest.raises(ParityError, match="splits the CFG branches, but the case has no CFG"):
        Case(**base, port_parallel="cfg=2").validate()
    cfg = Case(**base, port_parallel="cfg=2", negative_prompt="", true_cfg_scale=4.0).validate()
    assert cfg.degrees.cfg == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port-parallel", "tp=x"], '--port-parallel "tp=x": tp must be an integer >= 1'),
        (["--port-parallel", "ring=2"], "run it with --device cuda"),
        (["--port-parallel", "tp=2", "--mode", "both"], "runs in --mode full only"),
    ],
)
def test_the_flag_is_refused_before_any_model_work(tmp_path, flags, message):
    result = subprocess.run(
        [sys.executable, "-m", "parity", "run", "flux-tiny", "--out", str(tmp_path / "out"), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "libraries.log").exists()  # stopped before a run started
