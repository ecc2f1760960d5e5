"""parity.evidence on synthetic tensors: the token-axis evidence (lengths, a shift by a few tokens) and the
per-channel affine fit recover what was planted, and stay quiet where nothing was."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import evidence, stages
from parity.align import Pair
from parity.compare import compare
from parity.tolerance import Policy
from parity.trace import Key


def embeddings(seed: int, tokens: int = 12, width: int = 8) -> torch.Tensor:
    return torch.randn(1, tokens, width, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=40, deadline=None)
@given(
    shift=st.integers(-evidence.MAX_TOKEN_SHIFT, evidence.MAX_TOKEN_SHIFT).filter(bool),
    tokens=st.integers(8, 40),
    seed=st.integers(0, 2**16),
)
def test_a_token_shift_of_k_is_found_as_k_at_equal_length(shift, tokens, seed):
    """Port token i + k = reference token i (the rest of the port other tokens): the shift found is k, and
    the overlap is exact."""
    sequence = embeddings(seed, tokens + abs(shift))
    ref = sequence[:, abs(shift) :] if shift > 0 else sequence[:, :tokens]
    port = sequence[:, :tokens] if shift > 0 else sequence[:, abs(shift) :]
    found = evidence.token_shift(ref, port, axis=1)
    assert found["token_shift"] == shift and found["rel_l2_after_token_shift"] < 1e-12
    assert found["token_shift_overlap"] == tokens - abs(shift)
    assert "token_length_difference" not in found  # equal lengths


@settings(max_examples=40, deadline=None)
@given(extra=st.integers(1, evidence.MAX_TOKEN_SHIFT), tokens=st.integers(6, 30), seed=st.integers(0, 2**16))
def test_a_prefix_kept_or_dropped_names_both_lengths_and_the_shift(extra, tokens, seed):
    """A drop index `extra` tokens too small: the port is `extra` tokens longer, and shifted by `extra`."""
    sequence = embeddings(seed, tokens + extra)
    ref, port = sequence[:, extra:], sequence
    found = evidence.gather(ref, port, **evidence.axes(stages.TEXT_ENCODING, "prompt_embeds", 3))
    assert (found["token_length_port"], found["token_length_reference"]) == (tokens + extra, tokens)
    assert found["token_length_difference"] == extra
    assert found["token_shift"] == extra and found["rel_l2_after_token_shift"] < 1e-12
    swapped = evidence.token_shift(port, ref, axis=1)  # the port drops them: the other way round
    assert swapped["token_shift"] == -extra and swapped["token_length_difference"] == -extra


def test_padding_dropped_is_a_shorter_port_whose_tokens_all_agree():
    ref = torch.cat([embeddings(0, 5), torch.zeros(1, 27, 8)], dim=1)  # zero-padded to 32
    found = evidence.token_shift(ref, ref[:, :5], axis=1)
    assert found["token_length_difference"] == -27
    assert (found["token_shift"], found["rel_l2_after_token_shift"], found["token_shift_overlap"]) == (0, 0.0, 5)


def test_unrelated_tokens_line_up_under_no_shift():
    found = evidence.token_shift(embeddings(0), embeddings(1), axis=1)
    assert found["rel_l2_after_token_shift"] > 0.5  # the best of the shifts tried, far from a match
    assert evidence.token_shift(embeddings(0), embeddings(0, width=7), axis=1) == {}  # another width: no token axis


def test_token_ids_are_searched_too_and_the_shift_is_capped():
    ids = torch.arange(100, 120).unsqueeze(0)
    bos = torch.cat([torch.tensor([[1]]), ids], dim=1)
    found = evidence.gather(ids, bos, **evidence.axes(stages.TEXT_ENCODING, "input_ids.0", 2))
    assert found["token_shift"] == 1 and found["token_length_difference"] == 1
    far = torch.cat([torch.ones(1, evidence.MAX_TOKEN_SHIFT + 1, dtype=ids.dtype), ids], dim=1)[:, :20]
    assert evidence.token_shift(ids, far, axis=1)["rel_l2_after_token_shift"] > 0.01  # beyond the cap


def test_axes_follow_the_canonical_layout():
    assert evidence.axes(stages.TEXT_ENCODING, "negative_prompt_embeds", 3) == {"token_axis": 1}
    assert evidence.axes(stages.TEXT_ENCODING, "pooled_prompt_embeds", 2) == {}  # (B, D): no tokens
    assert evidence.axes(stages.TEXT_ENCODING, "attention_mask.0", 2) == {}  # 0/1 matches itself shifted
    assert evidence.axes(stages.DECODING, "vae_input", 5) == {"channel_axis": 1}
    assert evidence.axes(stages.DECODING, "frames", 4) == {"channel_axis": 1}
    assert evidence.axes(stages.DENOISING, "noise_pred", 5) == {}


@settings(max_examples=40, deadline=None)
@given(
    channels=st.integers(2, 16),
    seed=st.integers(0, 2**16),
    scales=st.lists(st.floats(0.05, 5.0) | st.floats(-5.0, -0.05), min_size=16, max_size=16),
    offsets=st.lists(st.floats(-3.0, 3.0), min_size=16, max_size=16),
)
def test_a_per_channel_affine_map_is_recovered(channels, seed, scales, offsets):
    ref = torch.randn(1, channels, 2, 6, 6, generator=torch.Generator().manual_seed(seed))
    a, b = torch.tensor(scales[:channels]), torch.tensor(offsets[:channels])
    port = ref * a.view(1, -1, 1, 1, 1) + b.view(1, -1, 1, 1, 1)
    found = evidence.gather(ref, port, **evidence.axes(stages.DECODING, "vae_input", 5))
    assert found["channel_fit_scale"] == pytest.approx(a.tolist(), rel=1e-4, abs=1e-5)
    assert found["channel_fit_offset"] == pytest.approx(b.tolist(), rel=1e-4, abs=1e-4)
    assert found["rel_l2_after_channel_affine"] < 1e-5


def test_a_port_no_affine_map_explains_leaves_a_large_residual():
    ref = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    port = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    assert evidence.channel_affine(ref, port, axis=1)["rel_l2_after_channel_affine"] > 0.9
    assert evidence.channel_affine(ref, torch.ones_like(ref), axis=1) == {}  # constant per channel: no claim
    nan = port.clone()
    nan[0, 0, 0, 0] = math.nan
    assert "channel_fit_scale" not in evidence.gather(ref, nan, channel_axis=1)  # not fitted through NaN


def test_compare_gathers_the_axis_evidence_for_the_tensors_that_have_the_axis():
    ref = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    port = ref * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1, 1)
    tokens = embeddings(0, 9)
    pairs = [
        Pair(Key("vae_input"), stages.DECODING, ref, port),
        Pair(Key("prompt_embeds"), stages.TEXT_ENCODING, tokens[:, 1:], tokens),
        Pair(Key("noise_pred", 0), stages.DENOISING, ref, port),
    ]
    vae, text, dit = compare(pairs, Policy("float32"))
    assert vae.evidence["channel_fit_scale"] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert text.evidence["token_shift"] == 1 and text.evidence["token_length_difference"] == 1
    assert "channel_fit_scale" not in dit.evidence and "token_shift" not in dit.evidence


def test_a_large_tensor_is_fitted_on_a_subsample(monkeypatch):
    monkeypatch.setattr(evidence, "CHANNEL_FIT_AT_MOST", 100)
    ref = torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    port = ref * torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1) + 1.0
    found = evidence.channel_affine(ref, port, axis=1)
    assert found["channel_fit_scale"] == pytest.approx([2.0, -1.0, 0.5])
    assert found["channel_fit_offset"] == pytest.approx([1.0, 1.0, 1.0])
    assert found["rel_l2_after_channel_affine"] < 1e-6  # the float32 port's own rounding
