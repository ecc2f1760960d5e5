"""parity.compare on random synthetic pairs: the tolerance rule against an independent numpy
computation of |port - ref| <= atol + rtol * |ref| and ||port - ref|| / ||ref|| <= rel_l2, and the
promise every failing check makes: the min_atol it names would have passed."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parity import stages
from parity.align import Pair
from parity.compare import compare, compare_pair
from parity.tolerance import Policy
from parity.trace import Key

SIZE = st.integers(1, 12)
VALUES = st.floats(-1e3, 1e3, width=32)
# port = ref + delta: mostly small differences (around the tolerances), sometimes none, sometimes large
DELTAS = st.one_of(st.just(0.0), st.floats(-(2.0**-7), 2.0**-7, width=32), st.floats(-8.0, 8.0, width=32))
TOLERANCES = st.one_of(st.just(0.0), st.floats(1e-7, 1.0))


def judged(ref: np.ndarray, port: np.ndarray, **tolerance) -> object:
    policy = Policy("float32", [("test", {"prompt_embeds": tolerance})])
    return compare(
        [Pair(Key("prompt_embeds", None), stages.TEXT_ENCODING, torch.from_numpy(ref), torch.from_numpy(port))], policy
    )[0]


@st.composite
def float_pairs(draw):
    n = draw(SIZE)
    ref = draw(hnp.arrays(np.float32, n, elements=VALUES))
    delta = draw(hnp.arrays(np.float32, n, elements=DELTAS))
    return ref, (ref + delta).astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(float_pairs(), TOLERANCES, TOLERANCES)
def test_a_float_check_follows_the_elementwise_rule_and_its_min_atol_would_pass(pair, atol, rtol):
    ref, port = pair
    check = judged(ref, port, atol=atol, rtol=rtol)
    r, p = ref.astype(np.float64), port.astype(np.float64)
    slack = np.abs(p - r) - rtol * np.abs(r)
    expected = max(0.0, float(slack.max()))
    scale = float(np.abs(p - r).max() + rtol * np.abs(r).max())
    assert check.min_atol == pytest.approx(expected, rel=1e-12, abs=1e-12 * scale)
    if abs(expected - atol) > 1e-9 * max(scale, atol):  # clear of the boundary: numpy decides
        assert check.passed == (expected <= atol)
    assert check.passed == (check.min_atol <= atol)
    assert check.status == ("ok" if check.passed else "mismatch")
    if not check.passed:
        assert check.message == (
            f"exceeds atol={atol:.3g} at rtol={rtol:.3g}; atol={check.min_atol:.3g} would have passed"
        )
    # the atol a check names passes at the same rtol; anything below it fails
    assert judged(ref, port, atol=check.min_atol, rtol=rtol).passed
    if check.min_atol > 0:
        below = float(np.nextafter(check.min_atol, 0.0))
        assert not judged(ref, port, atol=below, rtol=rtol).passed


@settings(max_examples=100, deadline=None)
@given(float_pairs(), st.floats(0.0, 2.0))
def test_a_rel_l2_limit_passes_exactly_at_the_relative_error_and_fails_below(pair, limit):
    ref, port = pair
    r, p = ref.astype(np.float64), port.astype(np.float64)
    assume(np.linalg.norm(r) > 0)
    rel_l2 = float(np.linalg.norm(p - r) / np.linalg.norm(r))
    check = judged(ref, port, atol=1e6, rel_l2=limit)  # the elementwise rule always passes
    assert check.metrics.rel_l2 == pytest.approx(rel_l2, rel=1e-9, abs=1e-300)
    if abs(rel_l2 - limit) > 1e-9 * max(rel_l2, limit):
        assert check.passed == (rel_l2 <= limit)
    if not check.passed:
        found = check.metrics.rel_l2
        assert check.message == f"rel_l2={found:.3g} exceeds {limit:.3g}; rel_l2<={found:.3g} would have passed"
        assert judged(ref, port, atol=1e6, rel_l2=found).passed


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-(2**52), 2**52), min_size=1, max_size=8),  # float64 holds each id exactly
    st.lists(st.integers(-3, 3), min_size=8, max_size=8),
    st.sampled_from([torch.int32, torch.int64]),
    st.sampled_from([torch.int32, torch.int64]),
)
def test_exact_ids_pass_only_when_equal_in_value_and_dtype(values, offsets, ref_dtype, port_dtype):
    if torch.int32 in (ref_dtype, port_dtype):
        values = [v % 2**20 for v in values]
    ref_values, port_values = values, [v + o for v, o in zip(values, offsets, strict=False)]
    ref, port = torch.tensor(ref_values, dtype=ref_dtype), torch.tensor(port_values, dtype=port_dtype)
    check = compare_pair(Pair(Key("input_ids.0", None), stages.TEXT_ENCODING, ref, port), Policy("float32"))
    equal = ref_values == port_values
    assert check.passed == (equal and ref_dtype == port_dtype)
    assert check.min_atol == max(abs(a - b) for a, b in zip(ref_values, port_values, strict=True))
    if not check.passed:
        differing = sum(a != b for a, b in zip(ref_values, port_values, strict=True))
        detail = f"{differing} of {len(values)} elements differ"
        if ref_dtype != port_dtype:
            detail += f"; dtype {ref_dtype} vs {port_dtype}"
        assert check.message == f"expected exact equality: {detail}"


@settings(max_examples=40, deadline=None)
@given(st.lists(float_pairs(), min_size=1, max_size=6), st.data())
def test_compare_in_a_batch_judges_each_pair_as_compare_pair_does(pairs, data):
    kinds = [("prompt_embeds", stages.TEXT_ENCODING, None), ("latents", stages.LATENT_PREPARATION, None)]
    kinds += [("noise_pred", stages.DENOISING, step) for step in range(6)]
    chosen = [data.draw(st.sampled_from(kinds)) for _ in pairs]
    sides = [data.draw(st.sampled_from(["both", "no port", "no reference"])) for _ in pairs]
    built = []
    for (ref, port), (tensor, stage, step), side in zip(pairs, chosen, sides, strict=True):
        r, p = torch.from_numpy(ref), torch.from_numpy(port)
        built.append(
            Pair(Key(tensor, step), stage, None if side == "no reference" else r, None if side == "no port" else p)
        )
    policy = Policy("float32")
    batch = compare(built, policy)
    assert [c.order for c in batch] == list(range(len(built)))
    for order, (pair, check) in enumerate(zip(built, batch, strict=True)):
        alone = compare_pair(pair, policy, order)
        assert (check.passed, check.status, check.message, check.ident) == (
            alone.passed,
            alone.status,
            alone.message,
            alone.ident,
        )
        assert math.isnan(check.min_atol) if math.isnan(alone.min_atol) else check.min_atol == alone.min_atol


def test_int64_ids_beyond_2_53_are_counted_as_differing():
    ref = torch.tensor([2**60, 0])
    check = compare_pair(Pair(Key("input_ids.0", None), stages.TEXT_ENCODING, ref, ref + 1), Policy("float32"))
    assert not check.passed and check.min_atol == 1  # right: torch.equal and the integer difference are exact
    assert check.message == "expected exact equality: 2 of 2 elements differ"  # float64 would read 2**60 + 1 as 2**60
