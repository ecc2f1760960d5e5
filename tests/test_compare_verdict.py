import dataclasses

import pytest
import torch

from parity import stages
from parity.align import Pair
from parity.compare import compare, compare_pair
from parity.tolerance import Policy
from parity.trace import Key
from parity.verdict import decide

POLICY = Policy("float32")


def pair(tensor, stage, ref, port, step=None):
    return Pair(Key(tensor, step), stage, ref, port)


def test_exact_kind_fails_on_one_changed_token_and_says_how_many():
    ids = torch.arange(10).unsqueeze(0)
    bad = ids.clone()
    bad[0, 3] = 99
    check = compare_pair(pair("input_ids.0", stages.TEXT_ENCODING, ids, bad), POLICY)
    assert not check.passed and check.status == "mismatch"
    assert "1 of 10 elements differ" in check.message
    assert compare_pair(pair("input_ids.0", stages.TEXT_ENCODING, ids, ids.clone()), POLICY).passed


def test_float_failure_states_the_tolerance_that_would_have_passed():
    ref = torch.ones(4, 4)
    check = compare_pair(pair("prompt_embeds", stages.TEXT_ENCODING, ref, ref + 0.01), POLICY)
    assert not check.passed
    assert abs(check.min_atol - (0.01 - 1e-5)) < 1e-6  # 0.01 minus rtol * |ref|
    assert f"atol={check.min_atol:.3g} would have passed" in check.message
    assert "rel_l2<=0.01 would have passed" in check.message


def test_small_systematic_shift_fails_on_rel_l2_in_bf16():
    policy = Policy("bfloat16")
    ref = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    check = compare_pair(pair("vae_input", stages.DECODING, ref, ref + 0.06), policy)
    assert not check.passed and "rel_l2" in check.message
    assert check.min_atol <= policy.for_tensor(stages.DECODING, "vae_input").atol  # elementwise alone passes


def test_shape_and_missing_sides_fail():
    a = torch.zeros(2, 3)
    assert compare_pair(pair("latents", stages.LATENT_PREPARATION, a, torch.zeros(3, 2)), POLICY).status == "shape"
    assert compare_pair(pair("latents", stages.LATENT_PREPARATION, a, None), POLICY).status == "missing_port"
    assert compare_pair(pair("latents", stages.LATENT_PREPARATION, None, a), POLICY).status == "missing_reference"


def test_first_divergence_follows_execution_order_not_trace_order():
    ok, bad = torch.zeros(3), torch.ones(3)
    pairs = [
        pair("frames", stages.DECODING, ok, bad),
        pair("noise_pred", stages.DENOISING, ok, bad, step=1),
        pair("noise_pred", stages.DENOISING, ok, bad, step=0),
        pair("prompt_embeds", stages.TEXT_ENCODING, ok, ok),
    ]
    verdict = decide(compare(pairs, POLICY))
    assert verdict.outcome == "fail" and verdict.exit_code == 1
    assert verdict.first_divergence == {"stage": "denoising", "tensor": "noise_pred", "step": 0, "block": None}


def test_within_a_step_blocks_come_between_dit_inputs_and_outputs():
    ok, bad = torch.zeros(3), torch.ones(3)
    pairs = [
        pair("noise_pred", stages.DENOISING, ok, bad, step=0),
        Pair(Key("hidden_states", 0, "transformer_blocks.1"), stages.DENOISING, ok, bad),
        Pair(Key("hidden_states", 0, "transformer_blocks.0"), stages.DENOISING, ok, ok),
        pair("dit_input", stages.DENOISING, ok, ok, step=0),
    ]
    verdict = decide(compare(pairs, POLICY))
    assert verdict.first_divergence["block"] == "transformer_blocks.1"


def test_later_failures_are_downstream_unless_from_an_independent_stage():
    ok, bad = torch.zeros(3), torch.ones(3)
    checks = compare(
        [
            pair("prompt_embeds", stages.TEXT_ENCODING, ok, bad),
            pair("timesteps", stages.TIMESTEP_PREPARATION, ok, bad),  # independent of text: a second cause
            pair("noise_pred", stages.DENOISING, ok, bad, step=0),  # consumes both: downstream
            pair("frames", stages.DECODING, ok, bad),
        ],
        POLICY,
    )
    verdict = decide(checks)
    roles = {c.tensor: verdict.role(c) for c in checks}
    assert roles == {"prompt_embeds": "cause", "timesteps": "cause", "noise_pred": "downstream", "frames": "downstream"}
    assert [c["tensor"] for c in verdict.cause_list] == ["prompt_embeds", "timesteps"]
    # In isolated mode every component ran on the reference's inputs: every failure is a cause.
    isolated = decide(checks, isolated=True)
    assert {isolated.role(c) for c in checks} == {"cause"} and len(isolated.causes) == 4


def test_pass_error_and_empty():
    checks = compare([pair("sigmas", stages.TIMESTEP_PREPARATION, torch.ones(3), torch.ones(3))], POLICY)
    assert decide(checks).outcome == "pass"
    assert decide(checks, error="port failed").outcome == "error"
    assert decide([]).outcome == "error"


def test_deciding_never_changes_a_check():
    ok, bad = torch.zeros(3), torch.ones(3)
    checks = compare(
        [pair("prompt_embeds", stages.TEXT_ENCODING, ok, bad), pair("frames", stages.DECODING, ok, bad)], POLICY
    )
    before = [dict(vars(c)) for c in checks]
    decide(checks)
    decide(checks, isolated=True)
    assert [dict(vars(c)) for c in checks] == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        checks[0].passed = True


def _nan_at(t, index, value=float("nan")):
    out = t.clone()
    out.view(-1)[index] = value
    return out


def test_nan_on_the_port_only_fails_and_the_message_leads_with_the_counts():
    ref = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    check = compare_pair(pair("noise_pred", stages.DENOISING, ref, _nan_at(ref, slice(0, 12)), step=1), POLICY)
    assert not check.passed and check.status == "nonfinite"
    assert check.message.startswith("the port has 12 NaN/Inf of 4096 elements (all NaN) where the reference has none")
    assert "only the 4084 elements finite on both sides" in check.message
    # The finite-only distances stay what they are (a pass-like 0), but the row does not pass.
    assert check.metrics.max_abs == 0.0 and check.metrics.port_nonfinite == 12
    assert check.row()["passed"] is False and check.row()["message"] == check.message


def test_nan_on_the_reference_only_names_the_reference():
    ref = torch.ones(10, 10)
    check = compare_pair(pair("latents", stages.DENOISING, _nan_at(ref, [3, 7]), ref, step=0), POLICY)
    assert not check.passed and check.status == "nonfinite"
    assert check.message.startswith("the reference has 2 NaN/Inf of 100 elements (all NaN) where the port has none")


def test_nan_on_both_sides_at_different_places():
    ref = torch.ones(100)
    check = compare_pair(pair("latents", stages.DENOISING, _nan_at(ref, 1), _nan_at(ref, [2, 3, 4]), step=0), POLICY)
    assert not check.passed and check.status == "nonfinite"
    assert check.message.startswith("both sides have NaN/Inf at different places: the port 3 NaN/Inf (all NaN), ")
    assert "the reference 1 NaN/Inf (all NaN), of 100 elements" in check.message
    assert "only the 96 elements finite on both sides" in check.message


def test_inf_is_counted_too_and_same_place_same_value_passes():
    ref = torch.ones(50)
    port = _nan_at(_nan_at(ref, 0, float("inf")), 1)
    check = compare_pair(pair("latents", stages.DENOISING, ref, port, step=0), POLICY)
    assert not check.passed and check.status == "nonfinite"
    assert check.message.startswith("the port has 2 NaN/Inf of 50 elements (1 NaN, 1 Inf) where the reference has none")
    # +Inf against -Inf at the same place: the places agree, the values do not.
    plus, minus = _nan_at(ref, 0, float("inf")), _nan_at(ref, 0, float("-inf"))
    check = compare_pair(pair("latents", stages.DENOISING, plus, minus, step=0), POLICY)
    assert check.status == "nonfinite" and "at the same places" in check.message and "different values" in check.message
    # The same NaN/Inf at the same places on both sides is agreement, judged on the finite rest.
    assert compare_pair(pair("latents", stages.DENOISING, port, port.clone(), step=0), POLICY).passed


def test_a_nonfinite_check_is_a_failing_cause_in_the_verdict():
    ref = torch.ones(8)
    checks = compare([pair("noise_pred", stages.DENOISING, ref, _nan_at(ref, 0), step=1)], POLICY)
    verdict = decide(checks)
    assert verdict.outcome == "fail" and verdict.first.status == "nonfinite"
