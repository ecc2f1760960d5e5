"""parity.metrics against an independent float64 numpy implementation of its documented definitions,
on random pairs: with NaN/Inf on either side, zeros, scaled and identical ports, any rtol, and many
pairs of several sizes in one batch (the stacked, chunked path must give every pair its own numbers)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import metrics

NONFINITE = (math.nan, math.inf, -math.inf)


def expected(reference: np.ndarray, port: np.ndarray, rtol: float) -> dict:
    """The documented metrics, by definition: distances over the elements finite on both sides;
    rel_l2 = ||port - ref|| / ||ref||, sqnr_db = 10 log10(||ref||^2 / ||port - ref||^2), cosine of
    the flattened tensors (1 when both are zero, 0 when one is); the min passing atol is the largest
    |port - ref| - rtol |ref| (never below 0), and inf unless NaN/Inf sit at the same places with
    the same values on both sides."""
    ref, out = reference.astype(np.float64).ravel(), port.astype(np.float64).ravel()
    ref_ok, out_ok = np.isfinite(ref), np.isfinite(out)
    same = bool(np.array_equal(ref_ok, out_ok)) and all(
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(ref[~ref_ok], out[~out_ok], strict=True)
    )
    both = ref_ok & out_ok
    r, o = ref[both], out[both]
    d = o - r
    atol = max(0.0, float(np.max(np.abs(d) - rtol * np.abs(r), initial=0.0))) if same else math.inf
    result = {"reference_nonfinite": int((~ref_ok).sum()), "port_nonfinite": int((~out_ok).sum()), "atol": atol}
    if not both.any():
        return result | dict.fromkeys(("max_abs", "mean_abs", "rel_l2", "cosine", "sqnr_db"), math.nan)
    rn, on, en = (math.sqrt(float(np.sum(v * v))) for v in (r, o, d))
    if rn == 0 and on == 0:
        cosine = 1.0
    elif rn == 0 or on == 0:
        cosine = 0.0
    else:
        cosine = float(np.dot(r, o)) / (rn * on)
    if en == 0:
        rel_l2, sqnr = 0.0, math.inf
    elif rn == 0:
        rel_l2, sqnr = math.inf, -math.inf
    else:
        rel_l2, sqnr = en / rn, 10 * math.log10(rn**2 / en**2)
    return result | {
        "max_abs": float(np.max(np.abs(d))),
        "mean_abs": float(np.mean(np.abs(d))),
        "rel_l2": rel_l2,
        "cosine": cosine,
        "sqnr_db": sqnr,
    }


def assert_matches(m: metrics.Metrics, atol: float, want: dict) -> None:
    assert m.shape_match and m.reference_nonfinite == want["reference_nonfinite"]
    assert m.port_nonfinite == want["port_nonfinite"]
    for name, got in [
        *((n, getattr(m, n)) for n in ("max_abs", "mean_abs", "rel_l2", "cosine", "sqnr_db")),
        ("atol", atol),
    ]:
        w = want[name]
        if math.isnan(w) or math.isinf(w):
            assert got == w or (math.isnan(got) and math.isnan(w)), (name, got, w)
        else:  # the cosine's dot product comes from three norms: cancellation costs a few ulps of |ref||port|
            assert got == pytest.approx(w, rel=1e-9, abs=1e-12 if name != "cosine" else 1e-9), (name, got, w)


@st.composite
def pairs(draw, size=None):
    """(reference, port, rtol): float32 reference; the port is independent, a scaled or perturbed
    copy, equal, or zero; either side may be all zero and may hold NaN/Inf."""
    n = size if size is not None else draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ref = rng.standard_normal(n).astype(np.float32)
    port_kind = draw(st.sampled_from(["independent", "scaled", "perturbed", "equal", "zero"]))
    port = {
        "independent": rng.standard_normal(n).astype(np.float32),
        "scaled": ref * np.float32(draw(st.floats(-3, 3))),
        "perturbed": ref + np.float32(1e-3) * rng.standard_normal(n).astype(np.float32),
        "equal": ref.copy(),
        "zero": np.zeros(n, np.float32),
    }[port_kind]
    if draw(st.booleans()):
        ref[:] = 0
    for side in (ref, port):
        for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
            side[i] = draw(st.sampled_from(NONFINITE))
    if draw(st.booleans()):  # the same NaN/Inf on both sides
        for i in draw(st.lists(st.integers(0, n - 1), max_size=2)):
            ref[i] = port[i] = draw(st.sampled_from(NONFINITE))
    return ref, port, draw(st.sampled_from([0.0, 0.0, 1e-5, 0.1, 0.5, 2.0]))


@settings(max_examples=300, deadline=None)
@given(pairs())
def test_each_pair_matches_the_definitions(pair):
    ref, port, rtol = pair
    m, atol = metrics.compute_batch([(torch.from_numpy(ref), torch.from_numpy(port), rtol)])[0]
    assert_matches(m, atol, expected(ref, port, rtol))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4).flatmap(lambda n: pairs(size=n)), min_size=2, max_size=10), st.integers(1, 9))
def test_a_batch_gives_every_pair_its_own_numbers(items, batch_elements):
    """Pairs of one size are stacked (in chunks of at most BATCH_ELEMENTS elements) and grouped by
    rtol; finite and non-finite pairs are measured by different formulas: none of it may mix pairs."""
    original = metrics.BATCH_ELEMENTS
    metrics.BATCH_ELEMENTS = batch_elements
    try:
        results = metrics.compute_batch([(torch.from_numpy(r), torch.from_numpy(p), rtol) for r, p, rtol in items])
    finally:
        metrics.BATCH_ELEMENTS = original
    assert len(results) == len(items)
    for (m, atol), (ref, port, rtol) in zip(results, items, strict=True):
        assert_matches(m, atol, expected(ref, port, rtol))


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_a_shape_mismatch_counts_but_does_not_measure(n, k, seed):
    rng = np.random.default_rng(seed)
    ref, port = rng.standard_normal((n, k + 1)), rng.standard_normal(n * k)
    ref[0, 0], port[-1] = math.nan, math.inf
    m, atol = metrics.compute_batch([(torch.from_numpy(ref), torch.from_numpy(port), 0.0)])[0]
    assert not m.shape_match and m.reference_shape == (n, k + 1) and m.port_shape == (n * k,)
    assert (m.reference_nonfinite, m.port_nonfinite) == (1, 1)
    assert all(math.isnan(v) for v in (atol, m.max_abs, m.mean_abs, m.rel_l2, m.cosine, m.sqnr_db))
