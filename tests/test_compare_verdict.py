import dataclasses
import math

import numpy as np
import pytest
import torch

from parity import metrics, stages
from parity.align import Pair
from parity.compare import compare, compare_pair
from parity.tolerance import Policy
from parity.trace import Key
from parity.verdict import classify, decide

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


# --- the tolerance rule, with expected values worked out by hand ----------------------------------


def test_rtol_scales_with_the_reference_and_is_not_atol():
    # fp32 embeddings: atol 1e-4, rtol 1e-5, so at |ref| = 10 an element may be off by 1e-4 + 10 * 1e-5 = 2e-4.
    ref = torch.full((4,), 10.0)
    port = ref + 2e-4  # float32 rounds 10.0002 to 10 + 2.0027e-4: just above the bound
    expected = float(np.float32(10 + 2e-4)) - 10 - 1e-5 * 10  # 1.0027e-4 > atol
    for check in (
        compare([pair("prompt_embeds", stages.TEXT_ENCODING, ref, port)], POLICY)[0],
        compare_pair(pair("prompt_embeds", stages.TEXT_ENCODING, ref, port), POLICY),
    ):
        # an rtol replaced by the atol (10 * 1e-4 = 1e-3) would pass it; rtol 0 would name 2.0027e-4
        assert not check.passed and check.status == "mismatch"
        assert check.min_atol == pytest.approx(expected, rel=1e-9)

    def one_element_off(delta):
        out = torch.full((100,), 10.0)
        out[7] += delta  # rel_l2 = delta / 100, far below 5e-5
        return compare([pair("prompt_embeds", stages.TEXT_ENCODING, torch.full((100,), 10.0), out)], POLICY)[0]

    assert one_element_off(1.5e-4).passed  # passes only thanks to rtol: 1.5e-4 > atol
    assert one_element_off(1.5e-4).min_atol == pytest.approx(float(np.float32(10 + 1.5e-4)) - 10 - 1e-4, abs=1e-9)
    assert not one_element_off(5e-4).passed  # 5e-4 > 2e-4 (an rtol as large as atol would allow 1.1e-3)


def override(**tolerance):
    return Policy("float32", [("test", {"prompt_embeds": tolerance})])


def test_a_port_exactly_at_atol_plus_rtol_times_the_reference_passes_and_one_ulp_above_fails():
    # Binary-exact numbers: |port - ref| = atol + rtol * |ref| is 0.25 + 0.5 * 2 = 1.25 and 0.25 + 0.5 * 4 = 2.25.
    policy = override(atol=0.25, rtol=0.5)
    ref = torch.tensor([2.0, -4.0])
    at = torch.tensor([3.25, -6.25])
    check = compare([pair("prompt_embeds", stages.TEXT_ENCODING, ref, at)], policy)[0]
    assert check.passed and check.status == "ok" and check.message == ""
    assert check.min_atol == 0.25
    above = torch.tensor([np.nextafter(np.float32(3.25), np.float32(4)), -6.25])
    check = compare([pair("prompt_embeds", stages.TEXT_ENCODING, ref, above)], policy)[0]
    assert not check.passed and check.min_atol == pytest.approx(0.25 + 2.0**-22)  # one float32 ulp at 3.25
    assert check.message == "exceeds atol=0.25 at rtol=0.5; atol=0.25 would have passed"


def test_a_port_exactly_at_the_rel_l2_limit_passes_and_one_ulp_above_fails():
    policy = override(atol=10.0, rel_l2=0.5)
    ref = torch.tensor([2.0])
    check = compare([pair("prompt_embeds", stages.TEXT_ENCODING, ref, torch.tensor([3.0]))], policy)[0]
    assert check.passed and check.metrics.rel_l2 == 0.5  # ||1|| / ||2||
    above = torch.tensor([np.nextafter(np.float32(3.0), np.float32(4))])
    check = compare([pair("prompt_embeds", stages.TEXT_ENCODING, ref, above)], policy)[0]
    assert not check.passed and check.status == "mismatch"
    assert check.message == "rel_l2=0.5 exceeds 0.5; rel_l2<=0.5 would have passed"


def test_both_problems_are_named_in_one_message():
    ref = torch.ones(4, 4)
    check = compare_pair(pair("prompt_embeds", stages.TEXT_ENCODING, ref, ref + 0.01), POLICY)
    shift = float(np.float32(1.01)) - 1
    assert check.message == (
        f"exceeds atol=0.0001 at rtol=1e-05; atol={shift - 1e-5:.3g} would have passed; "
        f"rel_l2={shift:.3g} exceeds 5e-05; rel_l2<={shift:.3g} would have passed"
    )


# --- exact kinds ----------------------------------------------------------------------------------


def test_exact_equality_includes_the_dtype():
    ids = torch.tensor([[5, 1, 7]], dtype=torch.int32)
    check = compare_pair(pair("input_ids.0", stages.TEXT_ENCODING, ids, ids.to(torch.int64)), POLICY)
    assert not check.passed and check.status == "mismatch" and check.min_atol == 0.0
    assert check.message == "expected exact equality: 0 of 3 elements differ; dtype torch.int32 vs torch.int64"
    same = compare_pair(pair("input_ids.0", stages.TEXT_ENCODING, ids, ids.clone()), POLICY)
    assert same.passed and same.status == "ok" and same.min_atol == 0.0 and same.message == ""
    # no elements, different dtypes: still not equal
    empty = compare_pair(pair("input_ids.0", stages.TEXT_ENCODING, ids[:, :0], ids[:, :0].long()), POLICY)
    assert not empty.passed and empty.min_atol == 0.0
    assert empty.message == "expected exact equality: 0 of 0 elements differ; dtype torch.int32 vs torch.int64"


def test_exact_integers_name_the_largest_difference_computed_in_integers():
    ref, port = torch.tensor([5, 1, 7]), torch.tensor([3, 1, 9])
    check = compare_pair(pair("input_ids.0", stages.TEXT_ENCODING, ref, port), POLICY)
    assert check.min_atol == 2 and check.message == "expected exact equality: 2 of 3 elements differ"
    # beyond 2**53 float64 cannot tell 2**60 from 2**60 + 3; the integer difference can
    big = torch.tensor([2**60])
    assert compare_pair(pair("input_ids.0", stages.TEXT_ENCODING, big, big + 3), POLICY).min_atol == 3


def test_exact_floats_name_the_largest_absolute_difference():
    # initial noise (latents at latent preparation) is an exact kind; rtol plays no part there
    ref = torch.ones(4)
    check = compare([pair("latents", stages.LATENT_PREPARATION, ref, ref + 0.5)], POLICY)[0]
    assert not check.passed and check.min_atol == 0.5
    assert check.message == "expected exact equality: 4 of 4 elements differ"
    assert compare_pair(pair("latents", stages.LATENT_PREPARATION, ref, ref + 0.5), POLICY).min_atol == 0.5
    # integer ids against float ones: the float distance, not a truncated integer one
    mixed = compare_pair(
        pair("input_ids.0", stages.TEXT_ENCODING, torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3.5])), POLICY
    )
    assert not mixed.passed and mixed.min_atol == 0.5
    assert mixed.message == "expected exact equality: 1 of 3 elements differ; dtype torch.int64 vs torch.float32"


def test_the_stage_picks_the_tolerance():
    # `latents` is exact at latent preparation (the initial noise), a float tolerance in denoising
    ref = torch.ones(8)
    port = ref + 1e-6
    for judged in (
        lambda stage, step: compare([pair("latents", stage, ref, port, step=step)], POLICY)[0],
        lambda stage, step: compare_pair(pair("latents", stage, ref, port, step=step), POLICY),
    ):
        assert not judged(stages.LATENT_PREPARATION, None).passed
        assert judged(stages.DENOISING, 0).passed


# --- what a check holds ---------------------------------------------------------------------------


def test_missing_sides_say_which_side_and_have_no_metrics():
    a = torch.zeros(2, 3)
    no_port = compare_pair(pair("latents", stages.DENOISING, a, None, step=2), POLICY)
    assert no_port.passed is False and no_port.metrics is None and math.isnan(no_port.min_atol)
    assert no_port.message == "the port produced no latents step=2"
    no_ref = compare_pair(pair("latents", stages.DENOISING, None, a, step=2), POLICY)
    assert no_ref.passed is False and no_ref.metrics is None
    assert no_ref.message == "the reference produced no latents step=2"
    # in a batch with complete pairs
    checks = compare(
        [
            pair("latents", stages.DENOISING, a, None, step=0),
            pair("latents", stages.DENOISING, a, a, step=1),
            pair("latents", stages.DENOISING, None, a, step=2),
        ],
        POLICY,
    )
    assert [c.status for c in checks] == ["missing_port", "ok", "missing_reference"]
    assert [c.passed for c in checks] == [False, True, False]
    assert [c.order for c in checks] == [0, 1, 2]


def test_a_shape_mismatch_keeps_its_metrics_and_evidence():
    check = compare_pair(pair("sigmas", stages.TIMESTEP_PREPARATION, torch.zeros(5), torch.zeros(4)), POLICY)
    assert check.passed is False and check.status == "shape"
    assert check.message == "shape [4] vs reference [5]"
    assert check.metrics.shape_match is False and check.metrics.port_shape == (4,)
    assert check.evidence == {"length_difference": -1}


def test_only_failing_checks_gather_evidence():
    x = torch.randn(16, generator=torch.Generator().manual_seed(1))
    ok = compare([pair("prompt_embeds", stages.TEXT_ENCODING, x, x.clone())], POLICY)[0]
    assert ok.passed and ok.evidence == {}
    bad = compare([pair("prompt_embeds", stages.TEXT_ENCODING, x, 2 * x)], POLICY)[0]
    assert bad.evidence["fit_scale"] == pytest.approx(2.0)


def test_order_is_the_position_of_the_pair():
    x = torch.zeros(2)
    assert compare_pair(pair("sigmas", stages.TIMESTEP_PREPARATION, x, x), POLICY).order == 0
    assert compare_pair(pair("sigmas", stages.TIMESTEP_PREPARATION, x, x), POLICY, order=5).order == 5


def test_compare_measures_every_complete_pair_in_one_batch(monkeypatch):
    calls = []
    real = metrics.compute_batch

    def spy(items):
        calls.append(len(items))
        return real(items)

    monkeypatch.setattr(metrics, "compute_batch", spy)
    x = torch.zeros(3)
    checks = compare(
        [
            pair("prompt_embeds", stages.TEXT_ENCODING, x, x + 1),
            pair("sigmas", stages.TIMESTEP_PREPARATION, x, None),
            pair("timesteps", stages.TIMESTEP_PREPARATION, x, x),
            pair("frames", stages.DECODING, x, x + 1),
        ],
        POLICY,
    )
    assert calls == [3]
    assert [c.passed for c in checks] == [False, False, True, False]


def test_label_and_execution_key():
    x = torch.zeros(2)
    check = compare_pair(pair("prompt_embeds", stages.TEXT_ENCODING, x, x), POLICY)
    assert check.label() == "text_encoding/prompt_embeds"
    block = compare_pair(Pair(Key("hidden_states", 1, "transformer_blocks.0"), stages.DENOISING, x, x), POLICY)
    assert block.label() == "denoising/hidden_states step 1 block transformer_blocks.0"
    # a block's record sits between the DiT's inputs (0) and outputs (2, 3), whatever its tensor's name
    named = compare_pair(Pair(Key("noise_pred", 1, "transformer_blocks.0"), stages.DENOISING, x, x), POLICY, order=7)
    assert named.execution_key() == (stages.rank(stages.DENOISING), 1, 1, 7)


def test_row_holds_the_tolerance_the_numbers_and_the_role():
    ref = torch.ones(4)
    check = compare_pair(pair("prompt_embeds", stages.TEXT_ENCODING, ref, ref + 0.5), POLICY)
    row = check.row("cause")
    assert {k: row[k] for k in list(row)[:15]} == {
        "stage": "text_encoding",
        "tensor": "prompt_embeds",
        "step": None,
        "block": None,
        "passed": False,
        "status": "mismatch",
        "tolerance": "atol=0.0001 rtol=1e-05 rel_l2<=5e-05",
        "atol": 1e-4,
        "rtol": 1e-5,
        "max_rel_l2": 5e-5,
        "tolerance_source": "default float32/embeddings",
        "min_atol": pytest.approx(0.5 - 1e-5),
        "message": check.message,
        "role": "cause",
        "shape_match": True,
    }
    assert row["max_abs"] == 0.5 and row["evidence"] == check.evidence and row["evidence"]["fit_offset"] == 0.5
    assert check.row()["role"] is None
    exact = compare_pair(pair("input_ids.0", stages.TEXT_ENCODING, torch.tensor([1]), torch.tensor([2])), POLICY).row()
    assert exact["atol"] is None and exact["rtol"] is None and exact["tolerance"] == "exact"
    assert exact["min_atol"] == 1.0 and exact["max_rel_l2"] is None
    missing = compare_pair(pair("prompt_embeds", stages.TEXT_ENCODING, ref, None), POLICY).row()
    assert missing["min_atol"] is None and "max_abs" not in missing and missing["evidence"] == {}


def test_nonfinite_messages_name_inf_and_same_places_exactly():
    ref = torch.ones(8)
    inf = compare_pair(pair("latents", stages.DENOISING, ref, _nan_at(ref, [2, 5], float("inf")), step=0), POLICY)
    assert inf.message == (
        "the port has 2 NaN/Inf of 8 elements (all Inf) where the reference has none; "
        "the distances cover only the 6 elements finite on both sides"
    )
    plus, minus = _nan_at(ref, 0, float("inf")), _nan_at(ref, 0, float("-inf"))
    check = compare_pair(pair("latents", stages.DENOISING, plus, minus, step=0), POLICY)
    assert check.message == (
        "both sides have NaN/Inf at the same places: the port 1 NaN/Inf (all Inf), the reference 1 NaN/Inf "
        "(all Inf), of 8 elements, with different values (NaN vs Inf, or Inf of the other sign); "
        "the distances cover only the 7 elements finite on both sides"
    )


# --- the verdict ----------------------------------------------------------------------------------


def test_classify_is_not_isolated_unless_asked():
    ok, bad = torch.zeros(3), torch.ones(3)
    checks = compare(
        [pair("prompt_embeds", stages.TEXT_ENCODING, ok, bad), pair("frames", stages.DECODING, ok, bad)], POLICY
    )
    assert list(classify(checks).values()) == ["cause", "downstream"]
    assert list(classify(checks, isolated=True).values()) == ["cause", "cause"]


def test_an_error_verdict_keeps_what_the_checks_concluded():
    ok, bad = torch.zeros(3), torch.ones(3)
    checks = compare(
        [pair("prompt_embeds", stages.TEXT_ENCODING, ok, bad), pair("frames", stages.DECODING, ok, bad)], POLICY
    )
    verdict = decide(checks, error="SGLang failed")
    assert verdict.outcome == "error" and verdict.exit_code == 2 and verdict.error == "SGLang failed"
    assert verdict.causes == (checks[0],) and verdict.first is checks[0]
    assert [verdict.role(c) for c in checks] == ["cause", "downstream"]


def test_nothing_compared_is_an_error_with_no_causes():
    verdict = decide([])
    assert verdict.outcome == "error" and verdict.exit_code == 2
    assert verdict.error == "nothing was compared: neither side recorded a tensor"
    assert verdict.causes == () and verdict.first is None and verdict.first_divergence is None
    assert verdict.cause_list == [] and dict(verdict.roles) == {}
    x = torch.zeros(2)
    assert verdict.role(compare_pair(pair("sigmas", stages.TIMESTEP_PREPARATION, x, x), POLICY)) is None


def test_ties_in_stage_step_and_phase_follow_the_trace_order():
    ok, bad = torch.zeros(3), torch.ones(3)
    pairs = [
        pair("pooled_prompt_embeds", stages.TEXT_ENCODING, ok, bad),
        pair("prompt_embeds", stages.TEXT_ENCODING, ok, bad),
    ]
    checks = compare(pairs, POLICY)
    verdict = decide(list(reversed(checks)))
    assert verdict.first.tensor == "pooled_prompt_embeds"
    assert [verdict.role(c) for c in checks] == ["cause", "downstream"]
