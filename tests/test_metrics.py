import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import metrics

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4)
seeds = st.integers(0, 2**31 - 1)


def _tensor(shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype)


def _min_passing_atol(reference, port, rtol):
    """The smallest atol with which |port - ref| <= atol + rtol |ref| holds everywhere."""
    return metrics.compute_batch([(reference, port, rtol)])[0][1]


@given(shapes, seeds)
def test_identical_tensors_have_zero_error_and_infinite_sqnr(shape, seed):
    x = _tensor(shape, seed)
    m = metrics.compute(x, x.clone())
    assert m.shape_match and m.max_abs == 0 and m.mean_abs == 0 and m.rel_l2 == 0
    assert m.sqnr_db == math.inf
    assert math.isclose(m.cosine, 1.0, abs_tol=1e-12)


@given(shapes, seeds, st.floats(1e-3, 10.0))
def test_scale_error_shows_in_rel_l2_but_not_in_cosine(shape, seed, scale):
    x = _tensor(shape, seed)
    if float(x.abs().sum()) == 0:
        return
    port = x * scale
    m = metrics.compute(x, port)
    assert math.isclose(m.cosine, 1.0, rel_tol=1e-9)  # cosine is blind to scale errors...
    # ...rel_l2 is not: about |scale - 1|, exactly the distance of the float32 values as stored
    ref64, port64 = x.double().numpy(), port.double().numpy()
    assert math.isclose(m.rel_l2, np.linalg.norm(port64 - ref64) / np.linalg.norm(ref64), rel_tol=1e-12)
    assert math.isclose(m.rel_l2, abs(scale - 1), rel_tol=1e-3, abs_tol=1e-7)


@settings(max_examples=50)
@given(shapes, seeds, seeds, st.floats(0.0, 0.5))
def test_min_passing_atol_is_the_boundary(shape, seed_a, seed_b, rtol):
    ref, port = _tensor(shape, seed_a), _tensor(shape, seed_b)
    atol = _min_passing_atol(ref, port, rtol)
    diff, bound = (port.double() - ref.double()).abs(), rtol * ref.double().abs()
    assert bool((diff <= atol + bound + 1e-12).all())
    if atol > 0:  # any smaller atol fails somewhere
        assert not bool((diff <= atol * 0.999 + bound).all())


def test_shape_mismatch_leaves_distances_undefined():
    m = metrics.compute(torch.zeros(2, 3), torch.zeros(3, 2))
    assert not m.shape_match and math.isnan(m.max_abs)
    assert m.reference_shape == (2, 3) and m.port_shape == (3, 2)


def test_nonfinite_values_are_counted_and_make_atol_infinite():
    ref = torch.tensor([1.0, 2.0, 3.0])
    port = torch.tensor([1.0, float("nan"), 3.0])
    m = metrics.compute(ref, port)
    assert m.port_nonfinite == 1 and m.reference_nonfinite == 0
    assert _min_passing_atol(ref, port, 0.0) == math.inf


def test_matching_nans_do_not_count_as_error():
    ref = torch.tensor([1.0, float("nan"), float("inf")])
    assert _min_passing_atol(ref, ref.clone(), 0.0) == 0.0


def test_sqnr_matches_its_definition():
    ref = torch.tensor([3.0, 4.0])  # ||ref|| = 5
    port = torch.tensor([3.0, 4.5])  # ||err|| = 0.5
    m = metrics.compute(ref, port)
    assert math.isclose(m.sqnr_db, 20.0, rel_tol=1e-12)
    assert math.isclose(m.rel_l2, 0.1, rel_tol=1e-12)


def test_metrics_are_computed_in_float64_for_bf16_inputs():
    ref = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    m = metrics.compute(ref, ref.float())
    assert m.max_abs == 0 and not m.dtype_match


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([(6,), (2, 3), (3, 2), (4,), (1, 4)]), seeds, st.floats(0.0, 0.5)), max_size=8),
    st.integers(1, 12),
)
def test_a_batch_measures_each_pair_as_it_would_alone(pairs, batch_elements):
    """Stacking pairs of one size (chunked at any limit) changes no pair's numbers; non-finite
    values in one pair leave the others alone."""
    items = []
    for shape, seed, rtol in pairs:
        ref, port = _tensor(shape, seed), _tensor(shape, seed + 1)
        if seed % 3 == 0:
            port.view(-1)[0] = float("nan")
        items.append((ref, port, rtol))
    items.append((torch.zeros(2, 3), torch.zeros(3, 2), 0.0))  # shape mismatch in the same batch
    original = metrics.BATCH_ELEMENTS
    metrics.BATCH_ELEMENTS = batch_elements
    try:
        batched = metrics.compute_batch(items)
    finally:
        metrics.BATCH_ELEMENTS = original
    alone = [metrics.compute_batch([item])[0] for item in items]
    assert repr(batched) == repr(alone)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 50), seeds, st.floats(0.0, 0.5))
def test_the_finite_only_formulas_agree_with_the_masked_ones_on_finite_values(rows, columns, seed, rtol):
    """compute_batch measures every pair with the cheap finite-only formulas and only pairs with
    NaN/Inf with the masked ones: on finite values the two must give the same numbers."""
    ref, out = _tensor((rows, columns), seed).double(), _tensor((rows, columns), seed + 7).double()
    pairs = torch.stack([ref, out], dim=1)
    fast, masked = metrics._finite_scalars(pairs.clone(), rtol), metrics._masked_scalars(pairs.clone(), rtol)
    assert torch.allclose(fast, masked, rtol=1e-12, atol=1e-12), (fast - masked).abs().max()


# By-hand cases: each expected value is worked out in the comment beside it, not read off the code.


def test_max_and_mean_abs_are_the_largest_and_the_average_difference():
    m = metrics.compute(torch.zeros(4), torch.tensor([1.0, 0.0, 0.0, -3.0]))
    assert m.max_abs == 3.0  # |-3|
    assert m.mean_abs == 1.0  # (1 + 0 + 0 + 3) / 4


@pytest.mark.parametrize(
    ("reference", "port", "cosine"),
    [
        ([0.0, 0.0], [0.0, 0.0], 1.0),  # both zero: the same (zero) direction
        ([0.0, 0.0], [1.0, 2.0], 0.0),  # one side zero: no direction in common
        ([1.0, 2.0], [0.0, 0.0], 0.0),
        ([1.0, 0.0], [0.0, 2.0], 0.0),  # orthogonal
        ([1.0, 2.0], [-2.0, -4.0], -1.0),  # opposite
        ([3.0, 4.0], [4.0, 3.0], 24 / 25),  # (12 + 12) / (5 * 5)
    ],
)
def test_cosine_of_the_flattened_tensors(reference, port, cosine):
    m = metrics.compute(torch.tensor(reference), torch.tensor(port))
    assert m.cosine == pytest.approx(cosine, abs=1e-15)


def test_a_zero_reference_against_a_nonzero_port_has_infinite_relative_error():
    m = metrics.compute(torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    assert m.rel_l2 == math.inf and m.sqnr_db == -math.inf
    assert m.max_abs == 1.0 and m.cosine == 0.0


def test_a_zero_port_against_a_nonzero_reference_has_relative_error_one():
    m = metrics.compute(torch.tensor([3.0, 4.0]), torch.zeros(2))
    assert m.rel_l2 == 1.0 and m.sqnr_db == 0.0  # ||0 - ref|| / ||ref||; 20 log10(5 / 5)
    assert m.cosine == 0.0


def test_sqnr_of_a_ratio_that_is_not_a_power_of_ten():
    m = metrics.compute(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 5.0]))  # ||ref|| = 5, ||err|| = 1
    assert m.sqnr_db == pytest.approx(20 * math.log10(5), rel=1e-12)  # 13.98 dB
    assert m.rel_l2 == pytest.approx(0.2, rel=1e-12)


def test_one_element_tensors_are_measured():
    m = metrics.compute(torch.tensor([2.0]), torch.tensor([2.5]))
    assert m.max_abs == m.mean_abs == 0.5 and m.rel_l2 == 0.25 and m.cosine == 1.0


def test_the_distances_leave_out_nonfinite_elements_and_count_them():
    ref = torch.tensor([1.0, float("nan"), 3.0, 4.0, float("inf")])
    port = torch.tensor([2.0, 7.0, 3.0, 2.0, float("inf")])
    m = metrics.compute(ref, port)
    assert (m.reference_nonfinite, m.port_nonfinite) == (2, 1)
    # finite on both sides: ref (1, 3, 4), port (2, 3, 2), difference (1, 0, -2)
    assert m.max_abs == 2.0 and m.mean_abs == 1.0
    assert m.rel_l2 == pytest.approx(math.sqrt(5 / 26), rel=1e-12)
    assert m.cosine == pytest.approx((2 + 9 + 8) / math.sqrt(26 * 17), rel=1e-12)
    assert m.sqnr_db == pytest.approx(10 * math.log10(26 / 5), rel=1e-12)


def test_nonfinite_values_in_the_reference_only_make_atol_infinite():
    ref = torch.tensor([1.0, float("nan"), 3.0])
    port = torch.tensor([1.0, 2.0, 3.5])
    m, atol = metrics.compute_batch([(ref, port, 0.0)])[0]
    assert (m.reference_nonfinite, m.port_nonfinite) == (1, 0) and atol == math.inf
    assert m.max_abs == 0.5  # over the finite elements 1 and 3


@pytest.mark.parametrize(
    ("reference", "port", "atol"),
    [
        ([1.0, float("inf")], [1.0, float("inf")], 0.0),  # the same Inf at the same place
        ([1.0, float("nan")], [1.0, float("nan")], 0.0),
        ([1.0, float("inf")], [1.0, -float("inf")], math.inf),  # same place, other sign
        ([1.0, float("nan")], [1.0, float("inf")], math.inf),  # same place, NaN against Inf
        ([float("nan"), 1.0], [1.0, float("nan")], math.inf),  # other places
        ([float("nan"), 1.0, 5.0], [float("nan"), 1.5, 4.0], 1.0),  # finite ones decide: max(0.5, 1)
    ],
)
def test_nonfinite_values_agree_only_at_the_same_places_with_the_same_values(reference, port, atol):
    assert _min_passing_atol(torch.tensor(reference), torch.tensor(port), 0.0) == atol


def test_min_passing_atol_subtracts_rtol_times_the_reference():
    ref, port = torch.tensor([1.0, -2.0, 4.0]), torch.tensor([1.5, -2.0, 3.0])
    # |diff| - rtol |ref| at rtol 0.25: 0.5 - 0.25, 0 - 0.5, 1 - 1 -> 0.25
    assert _min_passing_atol(ref, port, 0.25) == 0.25
    assert _min_passing_atol(ref, port, 0.0) == 1.0
    assert _min_passing_atol(ref, port, 1.0) == 0.0  # every element within rtol alone: atol 0, not < 0
    # the same with a NaN in both (the masked formulas): the NaN adds no slack
    nan = torch.tensor([float("nan")])
    assert _min_passing_atol(torch.cat([ref, nan]), torch.cat([port, nan]), 0.25) == 0.25


def test_only_nonfinite_elements_leave_the_distances_undefined():
    ref = torch.tensor([float("nan"), float("inf")])
    m, atol = metrics.compute_batch([(ref, ref.clone(), 0.0)])[0]
    assert math.isnan(m.max_abs) and math.isnan(m.mean_abs) and math.isnan(m.cosine) and math.isnan(m.rel_l2)
    assert (m.reference_nonfinite, m.port_nonfinite) == (2, 2) and atol == 0.0


def test_empty_tensors_match_with_undefined_distances():
    m, atol = metrics.compute_batch([(torch.zeros(0, 3), torch.zeros(0, 3), 0.0)])[0]
    assert m.shape_match and atol == 0.0
    assert math.isnan(m.max_abs) and math.isnan(m.rel_l2)


def test_a_shape_mismatch_still_counts_nonfinite_values():
    ref = torch.tensor([[1.0, float("nan"), 3.0], [4.0, 5.0, 6.0]])
    port = torch.tensor([float("inf"), -float("inf"), 1.0, 2.0, 3.0, float("nan")])
    m, atol = metrics.compute_batch([(ref, port, 0.0)])[0]
    assert not m.shape_match and math.isnan(atol)
    assert (m.reference_nonfinite, m.port_nonfinite) == (1, 3)


def test_integer_tensors_are_compared_and_have_no_nonfinite_values():
    m = metrics.compute(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 5]))
    assert m.max_abs == 2.0 and m.dtype_match is True and m.reference_dtype == "int64"
    mismatch = metrics.compute(torch.tensor([1, 2, 3]), torch.tensor([[1, 2, 3]]))
    assert (mismatch.reference_nonfinite, mismatch.port_nonfinite) == (0, 0)


def test_dtypes_are_named_without_the_torch_prefix():
    m = metrics.compute(torch.ones(2, dtype=torch.bfloat16), torch.ones(2, dtype=torch.float32))
    assert (m.reference_dtype, m.port_dtype) == ("bfloat16", "float32")
    assert m.dtype_match is False
    assert metrics.compute(torch.ones(2), torch.ones(2)).dtype_match is True


def test_float64_inputs_keep_their_precision():
    ref = torch.tensor([1.0, 2.0], dtype=torch.float64)
    port = ref + torch.tensor([1e-12, 0.0], dtype=torch.float64)  # lost in a float32 copy
    m = metrics.compute(ref, port)
    assert m.max_abs == pytest.approx(1e-12, rel=1e-3)


def test_as_dict_has_every_field_with_shapes_as_lists():
    m = metrics.compute(torch.zeros(2, 3), torch.ones(2, 3))
    d = m.as_dict()
    assert set(d) == {f.name for f in dataclasses.fields(metrics.Metrics)}
    assert d["reference_shape"] == [2, 3] and d["port_shape"] == [2, 3]
    assert isinstance(d["reference_shape"], list) and isinstance(d["port_shape"], list)
    assert d["max_abs"] == 1.0 and d["reference_dtype"] == "float32"
    json.dumps(d)  # a report writes it as JSON


def test_pairs_are_stacked_as_float64_on_the_given_device():
    pairs = [(torch.arange(3.0), torch.ones(3)), (torch.zeros(1, 3), torch.full((3,), 2.0, dtype=torch.float16))]
    stacked = metrics._stacked(pairs, torch.device("cpu"))
    assert stacked.dtype == torch.float64 and stacked.shape == (2, 2, 3)
    assert stacked[0, 0].tolist() == [0.0, 1.0, 2.0] and stacked[1, 1].tolist() == [2.0, 2.0, 2.0]
    assert metrics._stacked(pairs, torch.device("meta")).device.type == "meta"


def test_in_one_batch_each_pair_with_nonfinite_values_is_judged_on_its_own():
    nan, inf = float("nan"), float("inf")
    items = [
        (torch.tensor([nan, 1.0]), torch.tensor([nan, 1.5]), 0.0),  # same places, same values: 0.5
        (torch.tensor([nan, 1.0]), torch.tensor([1.0, nan]), 0.0),  # other places: inf
        (torch.tensor([inf, 1.0]), torch.tensor([inf, 1.25]), 0.0),  # same Inf: 0.25
        (torch.tensor([inf, 1.0]), torch.tensor([-inf, 1.0]), 0.0),  # other value: inf
    ]
    assert [atol for _, atol in metrics.compute_batch(items)] == [0.5, math.inf, 0.25, math.inf]


def test_pairs_are_stacked_on_their_references_device():
    """A GPU run's records are measured where they are: each group of pairs is stacked on the
    reference's device (here "meta", a device without data, next to the host)."""
    seen = []

    def scalars(pairs, rtol):
        seen.append(pairs.device.type)
        return torch.zeros(pairs.shape[0], 11)  # on the host: a meta tensor has no values to read back

    items = [(torch.ones(3, device="meta"), torch.ones(3, device="meta"), 0.0), (torch.ones(3), torch.ones(3), 0.0)]
    rows = metrics._measure(items, [0, 1], scalars)
    assert sorted(seen) == ["cpu", "meta"] and sorted(rows) == [0, 1]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), size=st.integers(1, 257), sign=st.sampled_from([1.0, -1.0]))
def test_a_cosine_never_leaves_minus_one_to_one_and_is_exact_for_equal_or_opposite_tensors(seed, size, sign):
    x = torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1e3
    assert metrics.compute(x, sign * x).cosine == sign  # rounding of the dot product never shows
    y = x + torch.randn(size, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    assert -1.0 <= metrics.compute(x, y).cosine <= 1.0


def test_the_cosine_of_a_tiny_port_against_a_large_reference_is_its_direction_not_rounding():
    # The dot product from the norms' identity cancelled here (cosine 0.5 for orthogonal tensors).
    reference = torch.tensor([0.126, 0.0], dtype=torch.float64)
    port = torch.tensor([0.0, 2.8e-17], dtype=torch.float64)
    assert metrics.compute(reference, port).cosine == 0.0
    assert metrics.compute(reference, port.flip(0)).cosine == pytest.approx(1.0, abs=1e-15)
