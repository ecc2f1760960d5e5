"""`parity sensitivity` without a pipeline: the perturbation, the search over its size on synthetic
detectors, the judgement of a probe's checks, the table and the cache key."""

import dataclasses
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import sensitivity_cache, stages
from parity.align import Pair
from parity.cases import bundled
from parity.compare import compare
from parity.errors import ParityError
from parity.sensitivity import (
    HIGH,
    LOW,
    Probe,
    Search,
    Target,
    decades,
    direction,
    judge,
    new_failures,
    perturb,
    relative_size,
    search,
)
from parity.sensitivity_table import Finding, Row, markdown, size, summary_line
from parity.tolerance import Policy
from parity.trace import Key, Trace

NOISE_PRED = Target(stages.DENOISING, "noise_pred", 0)
FACTOR = 10 ** (1 / 4)  # the bracket after two log-scale halvings of a decade


def threshold(t):
    """A detector that fires at and above `t`, localized."""
    return lambda eps: Probe(eps, eps >= t, "x" if eps >= t else None, eps >= t)


# -- the search --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=math.log10(LOW), max_value=math.log10(HIGH)))
def test_search_finds_a_threshold_within_the_bracket_factor(log_t):
    t = 10**log_t
    asked = []

    def probe(eps):
        asked.append(eps)
        return threshold(t)(eps)

    found = search(probe)
    assert found.smallest is not None and found.smallest.detected
    assert t <= found.smallest.eps <= max(t, LOW) * FACTOR * (1 + 1e-9)
    if found.largest_missed is not None:
        assert found.largest_missed < t  # everything below the row's "blind below" was probed and missed
        assert found.smallest.eps / found.largest_missed == pytest.approx(FACTOR)
    assert len(asked) <= 6 and len(set(asked)) == len(asked)  # 1 + log2(7 decades) + 2 halvings, none twice
    assert [p.eps for p in found.probes] == asked


def test_search_stops_after_one_probe_when_the_largest_size_is_missed():
    found = search(threshold(0.5))
    assert found.blind and found.smallest is None
    assert [p.eps for p in found.probes] == [HIGH]


def test_search_stops_at_the_floor_without_halvings():
    found = search(threshold(0.0))
    assert found.smallest is not None and found.smallest.eps == pytest.approx(LOW)
    assert found.largest_missed is None
    assert [p.eps for p in found.probes] == pytest.approx([1e-1, 1e-5, 1e-7])  # the decades' bisection, no halving


def test_decades_span_the_range_in_powers_of_ten():
    assert decades(1e-7, 1e-1) == pytest.approx([1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])


def test_search_against_the_real_comparison_finds_the_rel_l2_limit():
    """A synthetic detector made of parity's own perturbation and comparison: a tensor whose only limit is
    rel L2 1e-3 is detected from 1e-3 on, within the bracket factor."""
    policy = Policy("float32", [("test", {"noise_pred": {"atol": 1e9, "rtol": 0, "rel_l2": 1e-3}})])
    value = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def probe(eps):
        checks = compare([Pair(Key("noise_pred", 0), stages.DENOISING, value, perturb(value, eps))], policy)
        return judge(NOISE_PRED, eps, [], checks)

    found = search(probe)
    assert found.smallest is not None and found.smallest.localized
    assert 1e-3 <= found.smallest.eps <= 1e-3 * FACTOR * (1 + 1e-9)
    assert found.largest_missed is not None and found.largest_missed < 1e-3


# -- the perturbation ------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=4),
    st.floats(min_value=1e-7, max_value=1e-1),
    st.integers(0, 2**31),
)
def test_perturbation_has_the_asked_relative_size_in_float64(shape, eps, seed):
    value = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.5
    moved = perturb(value, eps)
    assert moved.shape == value.shape and moved.dtype == value.dtype
    assert relative_size(value, moved) == pytest.approx(eps, rel=1e-6)


def test_direction_is_fixed_by_shape_and_seed():
    assert torch.equal(direction((3, 4)), direction((3, 4)))
    assert not torch.equal(direction((3, 4)), direction((3, 4), seed=1))
    assert float(direction((5, 7)).norm()) == pytest.approx(1.0)


def test_a_perturbation_below_bf16_resolution_rounds_away():
    value = torch.ones(64, 64, dtype=torch.bfloat16)
    assert relative_size(value, perturb(value, 1e-6)) == 0.0
    assert relative_size(value, perturb(value, 1e-1)) == pytest.approx(1e-1, rel=0.05)


# -- judging a probe -------------------------------------------------------------------------------------


def checks(failing):
    """One check per (stage, tensor, step), failing where named in `failing`."""
    names = [
        (stages.TEXT_ENCODING, "prompt_embeds", None),
        (stages.DENOISING, "noise_pred", 0),
        (stages.DENOISING, "latents", 0),
        (stages.DECODING, "frames", None),
    ]
    zero = torch.zeros(4)
    pairs = [Pair(Key(t, s), stage, zero, zero + (1.0 if t in failing else 0.0)) for stage, t, s in names]
    return compare(pairs, Policy("float32"))


def test_only_failures_new_to_the_probe_count_in_execution_order():
    unperturbed, probe = checks({"prompt_embeds"}), checks({"prompt_embeds", "frames", "latents"})
    assert [c.tensor for c in new_failures(unperturbed, probe)] == ["latents", "frames"]


def test_a_probe_is_localized_when_its_own_check_is_the_first_new_failure():
    mine = judge(NOISE_PRED, 0.1, checks(set()), checks({"noise_pred", "latents"}))
    assert mine.detected and mine.localized and mine.first_new == "denoising/noise_pred step 0"
    astray = judge(NOISE_PRED, 0.1, checks(set()), checks({"latents"}))
    assert astray.detected and not astray.localized and astray.first_new == "denoising/latents step 0"
    masked = judge(NOISE_PRED, 0.1, checks({"noise_pred"}), checks({"noise_pred"}))
    assert not masked.detected  # failing already: the probe cannot be told apart


def test_the_frames_similarity_check_names_the_frames():
    frames = Target(stages.DECODING, "frames")
    zero = torch.zeros(1, 3, 8, 8)
    pairs = [
        Pair(Key("frames_similarity"), stages.DECODING, zero, zero + 1),
        Pair(Key("frames"), stages.DECODING, zero, zero),
    ]
    probe = judge(frames, 0.1, [], compare(pairs, Policy("float32")))
    assert probe.detected and probe.localized and probe.first_new == "decoding/frames_similarity"
    assert not judge(NOISE_PRED, 0.1, [], compare(pairs[:1], Policy("float32"))).localized


# -- the table -------------------------------------------------------------------------------------------


def row(target, smallest, localized=True, first_new=None):
    probes = (Probe(HIGH, True, first_new or target.label(), localized),)
    if smallest is None:
        return Row(target, Finding.BLIND, Search((Probe(HIGH, False),), None, HIGH), fed=True)
    hit = Probe(smallest, True, first_new or target.label(), localized)
    return Row(target, Finding.DETECTED, Search((*probes, hit), hit, smallest / FACTOR), fed=True, port_runs=2)


ROWS = [
    row(Target(stages.TEXT_ENCODING, "prompt_embeds"), 1.8e-2),
    row(NOISE_PRED, 5.6e-2),
    row(Target(stages.TIMESTEP_PREPARATION, "sigmas"), 1e-7, False, "denoising/latents step 0"),
    row(Target(stages.DENOISING, "hidden_states", 0, "single_transformer_blocks.1"), None),
    Row(Target(stages.LATENT_PREPARATION, "latents"), Finding.FAILS_UNPERTURBED),
]


def test_summary_names_the_weakest_tensor_the_blind_ones_and_the_unlocalized():
    line = summary_line("bfloat16", ROWS, "denoising/dit_time_embedding_input.0 step 1")
    block = "single_transformer_blocks.1"
    blind = f"block {block}'s hidden_states (denoising/hidden_states step 0 block {block})"
    assert line.startswith(f"bf16: blind up to 1e-1 in {blind}; elsewhere blind below 5.6e-2 in the DiT output")
    assert summary_line("bfloat16", ROWS[:2]).startswith("bf16: blind below 5.6e-2 in the DiT output (denoising/")
    assert "not localized: the sigmas (first seen at denoising/latents step 0)" in line
    assert "failing unperturbed: the initial latents" in line
    assert "only new failures count" in line
    assert summary_line("float32", []) == "fp32: nothing probed"


def test_sizes_print_short():
    assert [size(x) for x in (1e-7, 3.16e-2, 0.1, None)] == ["1e-7", "3.2e-2", "1e-1", "–"]


def test_markdown_has_one_table_row_per_tensor():
    doc = {
        "case": {"name": "flux-tiny", "dtype": "bfloat16", "device": "cpu"},
        "sensitivity": {
            "summary": summary_line("bfloat16", ROWS),
            "seed": 0,
            "low": LOW,
            "high": HIGH,
            "halvings": 2,
            "unperturbed": {"verdict": "pass", "first_divergence": None, "passed": 61, "checks": 61},
            "rows": [r.as_dict() for r in ROWS],
            "port_runs": 8,
            "seconds": {"total": 1.0},
            "key": "k",
            "key_inputs": {"case": "c"},
        },
    }
    text = markdown(json.loads(json.dumps(doc)))  # as read back from report.json
    lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(lines) == 1 + len(ROWS)
    assert "| denoising | noise_pred | 0 | – | 5.6e-2 | 3.1e-2 | yes | denoising/noise_pred step 0 | yes | 2 |" in text
    assert "| latent_preparation | latents | – | – | fails_unperturbed |" in text


# -- the cache key ---------------------------------------------------------------------------------------


def test_the_key_follows_the_case_the_dtype_and_the_tensors():
    case = bundled()["flux-tiny"]
    key = sensitivity_cache.key(sensitivity_cache.key_inputs(case))
    assert key == sensitivity_cache.key(sensitivity_cache.key_inputs(case))
    others = [
        sensitivity_cache.key_inputs(case.with_overrides(dtype="bfloat16")),
        sensitivity_cache.key_inputs(dataclasses.replace(case, steps=5)),
        sensitivity_cache.key_inputs(case, "noise_pred"),
    ]
    assert key not in {sensitivity_cache.key(inputs) for inputs in others}
    assert sensitivity_cache.key_inputs(case)["model"].startswith("flux_tiny-")  # the fixture's build key


def test_a_kept_table_is_used_only_while_its_key_holds(tmp_path):
    case = bundled()["flux-tiny"]
    out = sensitivity_cache.out_dir(case, tmp_path)
    assert out == tmp_path / "flux-tiny-float32"
    current = sensitivity_cache.key(sensitivity_cache.key_inputs(case))
    doc = {"kind": "sensitivity", "sensitivity": {"key": current, "summary": "fp32: blind below 1.8e-5 in x"}}
    out.mkdir()
    (out / "report.json").write_text(json.dumps(doc))
    assert sensitivity_cache.cached(out, current) == doc
    assert sensitivity_cache.cached(out, "another") is None
    assert sensitivity_cache.summary(case, tmp_path) == "fp32: blind below 1.8e-5 in x"
    doc["sensitivity"]["key"] = "stale"
    (out / "report.json").write_text(json.dumps(doc))
    assert "(stale" in str(sensitivity_cache.summary(case, tmp_path))
    (out / "report.json").write_text('{"kind": "sensitivity-error", "error": "x"}')
    assert sensitivity_cache.read(out) is None and sensitivity_cache.summary(case, tmp_path) is None


# -- choosing and injecting, on synthetic traces ----------------------------------------------------------


def flux_like_trace():
    trace = Trace("reference")
    trace.add("input_ids.0", stages.TEXT_ENCODING, torch.arange(4))
    trace.add("pooled_prompt_embeds", stages.TEXT_ENCODING, torch.ones(1, 8))
    trace.add("prompt_embeds", stages.TEXT_ENCODING, torch.ones(1, 4, 8))
    trace.add("latents", stages.LATENT_PREPARATION, torch.ones(1, 4, 4, 4))
    trace.add("timesteps", stages.TIMESTEP_PREPARATION, torch.ones(2))
    trace.add("sigmas", stages.TIMESTEP_PREPARATION, torch.ones(3))
    for step in (0, 1):
        trace.add("dit_input", stages.DENOISING, torch.ones(1, 4, 16), step=step)
        if step == 0:
            for block in ("embedders", "transformer_blocks.0", "single_transformer_blocks.1"):
                trace.add("encoder_hidden_states", stages.DENOISING, torch.ones(1, 4, 8), step=step, block=block)
                trace.add("hidden_states", stages.DENOISING, torch.ones(1, 4, 8), step=step, block=block)
        trace.add("noise_pred", stages.DENOISING, torch.ones(1, 4, 16), step=step)
        trace.add("latents", stages.DENOISING, torch.ones(1, 4, 16), step=step)
    trace.add("vae_input", stages.DECODING, torch.ones(1, 4, 4, 4))
    trace.add("frames", stages.DECODING, torch.ones(1, 3, 8, 8))
    return trace


def test_one_representative_per_stage_and_the_first_and_last_block_at_step_0():
    from parity import families
    from parity.sensitivity_run import representatives, select

    targets = representatives(flux_like_trace(), families.get("flux"))
    assert [t.label() for t in targets] == [
        "text_encoding/prompt_embeds",
        "latent_preparation/latents",
        "timestep_preparation/sigmas",
        "denoising/dit_input step 0",
        "denoising/hidden_states step 0 block transformer_blocks.0",
        "denoising/hidden_states step 0 block single_transformer_blocks.1",
        "denoising/noise_pred step 0",
        "denoising/latents step 0",
        "decoding/vae_input",
        "decoding/frames",
    ]
    assert [t.tensor for t in select(targets, "noise_pred, decoding/frames")] == ["noise_pred", "frames"]
    assert len(select(targets, "blocks")) == 2
    assert len(select(targets, "latents")) == 2  # the initial latents and the scheduler's
    with pytest.raises(ParityError, match="names none of the tensors"):
        select(targets, "noise_prd")


def test_the_injecting_teacher_hands_over_the_perturbed_value_and_notes_what_was_asked():
    from parity.sensitivity_run import Injecting, as_port_value, with_value

    reference = flux_like_trace()
    key = Key("noise_pred", 0)
    moved = perturb(reference.get(key).value, 0.1)
    teacher = Injecting(reference, key, moved)
    assert torch.equal(teacher.get(key).value, moved)
    assert torch.equal(teacher.get(Key("noise_pred", 1)).value, reference.get(Key("noise_pred", 1)).value)
    assert teacher.asked == {key, Key("noise_pred", 1)}
    assert torch.equal(reference.get(key).value, torch.ones(1, 4, 16))  # the reference is left as it was
    port = flux_like_trace()
    like = port.get(key)
    held = as_port_value(teacher, key, dataclasses.replace(like, value=like.value.bfloat16()))
    assert held.dtype == torch.bfloat16  # as the port receives it
    copy = with_value(port, key, moved)
    assert torch.equal(copy.get(key).value, moved) and torch.equal(port.get(key).value, torch.ones(1, 4, 16))
    assert len(copy) == len(port)


def test_the_suite_shows_kept_tables_without_running_them(tmp_path):
    from parity.cases import cases_dir
    from parity.suite import kept_sensitivity

    case = bundled()["flux-tiny"].with_overrides(dtype="bfloat16")
    inputs = sensitivity_cache.key_inputs(case, None, cases_dir() / "flux-tiny.toml")
    out = sensitivity_cache.out_dir(case, tmp_path)
    out.mkdir()
    doc = {"sensitivity": {"key": sensitivity_cache.key(inputs), "summary": "bf16: blind below 5.6e-2 in x"}}
    (out / "report.json").write_text(json.dumps({"kind": "sensitivity", **doc}))
    rows = [
        {"name": "flux-tiny", "dtype": "bfloat16", "degrees": None},
        {"name": "flux-tiny", "dtype": "float32", "degrees": None},  # no table kept: not listed
        {"name": "wan-t2v-tiny", "dtype": "float32", "degrees": "tp=2"},  # a multi-rank run: never probed
    ]
    assert kept_sensitivity(rows, tmp_path) == ["- flux-tiny: bf16: blind below 5.6e-2 in x"]
