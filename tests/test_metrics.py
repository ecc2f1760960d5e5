import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import metrics

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4)
seeds = st.integers(0, 2**31 - 1)


def _tensor(shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype)


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
    m = metrics.compute(x, x * scale)
    assert math.isclose(m.cosine, 1.0, rel_tol=1e-9)  # cosine is blind to scale errors...
    assert math.isclose(m.rel_l2, abs(scale - 1), rel_tol=1e-5, abs_tol=1e-7)  # ...rel_l2 is not


@settings(max_examples=50)
@given(shapes, seeds, seeds, st.floats(0.0, 0.5))
def test_min_passing_atol_is_the_boundary(shape, seed_a, seed_b, rtol):
    ref, port = _tensor(shape, seed_a), _tensor(shape, seed_b)
    atol = metrics.min_passing_atol(ref, port, rtol)
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
    assert metrics.min_passing_atol(ref, port, 0.0) == math.inf


def test_matching_nans_do_not_count_as_error():
    ref = torch.tensor([1.0, float("nan"), float("inf")])
    assert metrics.min_passing_atol(ref, ref.clone(), 0.0) == 0.0


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
