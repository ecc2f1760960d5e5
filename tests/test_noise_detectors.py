"""The noise detector's parts, each against values worked out by hand or with numpy: the image layouts
it reads, the neighbour correlation, the high-frequency share, the evidence and the verdict's order.
Synthetic patterns where the answer is known exactly; scikit-image's photographs where it is not."""

import math

import numpy as np
import pytest
import skimage.data
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import util

from parity import noise
from parity.noise import CONSTANT_STD, SATURATED_SHARE, detect, high_frequency_share, lag_correlation, to_channels

CAMERA = util.img_as_float(skimage.data.camera())[::4, ::4]  # 128 x 128 grayscale
ASTRONAUT = util.img_as_float(skimage.data.astronaut())[::8, ::8]  # 64 x 64 x 3
COFFEE = util.img_as_float(skimage.data.coffee())[::8, ::8]  # 50 x 75 x 3: not square


def checkerboard(h, w, cell=1):
    """0/1 squares of `cell` px."""
    i, j = np.indices((h, w))
    return ((i // cell + j // cell) % 2).astype(float)


def blocks(n, period):
    """+-1 along each axis with sign (-1)^floor(k / period), as an outer product, mapped to 0/1: at a lag of
    `period` px the image inverts, at other lags it is only partly alike."""
    s = np.array([(-1.0) ** (k // period) for k in range(n)])
    return 0.5 + 0.5 * np.outer(s, s)


def np_lag_correlation(x, lag=1):
    """Mean of the horizontal and vertical correlation coefficients at `lag` (1 for a flat image)."""
    x = x - x.mean()
    var = (x * x).mean()
    if var == 0:
        return 1.0
    horizontal = (x[:, lag:] * x[:, :-lag]).mean()
    vertical = (x[lag:, :] * x[:-lag, :]).mean()
    return (horizontal + vertical) / 2 / var


def np_high_frequency_share(x):
    """Share of the spectral power (mean removed) at frequencies beyond 0.25 cycles/px (half Nyquist)."""
    power = np.abs(np.fft.fft2(x - x.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(x.shape[0]), np.fft.fftfreq(x.shape[1]), indexing="ij")
    total = power.sum()
    return float(power[np.hypot(fx, fy) > 0.25].sum() / total) if total > 0 else 0.0


def channels_last(image):
    return image[..., None] if image.ndim == 2 else image


# to_channels: the layouts an image comes in


def test_a_grayscale_image_is_one_float64_channel():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 12
    out = to_channels(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (1, 3, 4)
    assert np.array_equal(out[0], x.astype(np.float64))
    from_torch = to_channels(torch.from_numpy(x))
    assert from_torch.dtype == torch.float64 and torch.equal(from_torch, torch.from_numpy(out))


def test_uint8_is_scaled_by_255_exactly():
    x = np.array([[0, 1, 51], [128, 254, 255]], dtype=np.uint8)
    assert np.array_equal(to_channels(x)[0], x / 255.0)
    assert np.array_equal(to_channels(torch.from_numpy(x))[0].numpy(), x / 255.0)


def test_bool_is_zero_or_one():
    x = np.array([[True, False], [False, True]])
    assert np.array_equal(to_channels(x)[0], x.astype(float))


@pytest.mark.parametrize(
    ("shape", "moved"),
    [
        ((5, 4, 3), True),
        ((5, 5, 1), True),
        ((8, 6, 4), True),
        ((3, 5, 4), False),
        ((4, 8, 6), False),
        ((1, 8, 8), False),
        ((4, 4, 3), False),
        ((2, 9, 7), False),
    ],
)
def test_channels_last_or_first_with_alpha_dropped(shape, moved):
    """A last axis of at most 4 after a first of more than 4 holds the channels; otherwise the first
    axis does (so an ambiguous 4 x 4 x 3 is read as 4 channels of 4 x 3). Alpha, the 4th, is dropped."""
    x = np.random.default_rng(0).random(shape)
    want = np.moveaxis(x, -1, 0) if moved else x
    assert np.array_equal(to_channels(x), want[:3])
    assert np.array_equal(to_channels(torch.from_numpy(x)).numpy(), want[:3])


@pytest.mark.parametrize("shape", [(5, 6, 7), (5, 8, 8), (8,), (1, 3, 8, 8), (2, 3, 8, 8), (8, 8, 5)])
def test_anything_else_is_not_an_image(shape):
    with pytest.raises(ValueError, match=rf"got shape \({shape[0]},"):
        to_channels(np.zeros(shape))


def test_tensors_are_read_as_they_are_even_where_numpy_cannot_hold_them():
    x = torch.rand(3, 8, 8)
    assert torch.equal(to_channels(x.to(torch.bfloat16)), x.to(torch.bfloat16).double())
    assert torch.equal(to_channels(x.requires_grad_()), x.detach().double())


# lag_correlation


@pytest.mark.parametrize("lag", [1, 2, 3])
@pytest.mark.parametrize(
    "image",
    [CAMERA, checkerboard(16, 16), blocks(24, 3), np.linspace(0, 1, 30).reshape(5, 6), COFFEE[..., 0]],
    ids=["camera", "checkerboard", "blocks", "ramp", "coffee"],
)
def test_lag_correlation_is_the_correlation_coefficient(image, lag):
    assert lag_correlation(torch.from_numpy(image), lag).item() == pytest.approx(
        np_lag_correlation(image, lag), abs=1e-12
    )


def test_lag_correlation_by_hand():
    board = torch.from_numpy(2 * checkerboard(8, 8) - 1)  # +-1, mean 0, variance exactly 1
    assert lag_correlation(board, 1).item() == -1.0  # every neighbour of the other sign
    assert lag_correlation(board, 2).item() == 1.0
    assert lag_correlation(board).item() == -1.0  # the lag is 1 unless given
    stripes = torch.tensor(
        [[0.0, 0.0, 1.0, 1.0]] * 4, dtype=torch.float64
    )  # rows alike (+1); columns: +1, -1, +1 -> 1/3
    assert lag_correlation(stripes).item() == pytest.approx((1 + 1 / 3) / 2, abs=1e-15)
    assert lag_correlation(torch.full((4, 6), 0.5, dtype=torch.float64)).item() == 1.0  # flat: defined as 1


def test_lag_correlation_is_per_leading_index():
    images = [CAMERA[:40, :40], checkerboard(40, 40), np.full((40, 40), 0.7), 3 + ASTRONAUT[:40, :40, 1]]
    batch = lag_correlation(torch.from_numpy(np.stack(images)), 2)
    assert batch.shape == (4,)
    assert batch.tolist() == pytest.approx([np_lag_correlation(x, 2) for x in images], abs=1e-12)


# high_frequency_share


def test_high_frequency_share_by_hand():
    _, j = np.indices((8, 16))
    i, _ = np.indices((16, 8))

    def share(x):
        return high_frequency_share(torch.from_numpy(np.asarray(x, dtype=float))).item()

    assert share(np.full((8, 8), 0.4)) == 0.0  # no power at all
    assert share(checkerboard(8, 8)) == pytest.approx(1.0)  # all of it at (0.5, 0.5) cycles/px
    assert share(1e-3 * checkerboard(8, 8)) == pytest.approx(1.0)  # a faint one too
    assert share(np.cos(2 * np.pi * j / 8)) == pytest.approx(0.0, abs=1e-12)  # 0.125 cycles/px
    assert share(np.cos(2 * np.pi * j / 4)) == pytest.approx(0.0, abs=1e-12)  # 0.25: the edge is not beyond it
    assert share(np.cos(2 * np.pi * 3 * j / 8)) == pytest.approx(1.0)  # 0.375 along the rows (width 16)
    assert share(np.cos(2 * np.pi * 3 * i / 8)) == pytest.approx(1.0)  # ... and along the columns (height 16)
    assert share(np.cos(2 * np.pi * 3 * j / 16)) == pytest.approx(0.0, abs=1e-12)  # 0.1875
    # amplitude 1 at 0.125 and 2 at 0.375 cycles/px: power 1 : 4, so 4/5 beyond the edge
    assert share(np.cos(2 * np.pi * j / 8) + 2 * np.cos(2 * np.pi * 3 * j / 8)) == pytest.approx(0.8)


@pytest.mark.parametrize(
    "image",
    [CAMERA, COFFEE[..., 2], checkerboard(20, 12, 2), blocks(30, 4)],
    ids=["camera", "coffee", "board", "blocks"],
)
def test_high_frequency_share_matches_numpy(image):
    assert high_frequency_share(torch.from_numpy(image)).item() == pytest.approx(
        np_high_frequency_share(image), abs=1e-12
    )


def test_high_frequency_share_is_per_leading_index():
    images = [CAMERA[:32, :32], checkerboard(32, 32), np.full((32, 32), 0.5), 10 * ASTRONAUT[:32, :32, 0]]
    batch = high_frequency_share(torch.from_numpy(np.stack(images)))
    assert batch.tolist() == pytest.approx([np_high_frequency_share(x) for x in images], abs=1e-12)


def test_white_noise_puts_the_documented_share_beyond_half_nyquist():
    x = np.random.default_rng(1).normal(size=(256, 256))
    # a flat spectrum: the share of the frequency square [-0.5, 0.5)^2 outside the 0.25 circle
    assert high_frequency_share(torch.from_numpy(x)).item() == pytest.approx(1 - math.pi / 16, abs=0.01)
    assert noise.WHITE_NOISE_HF_SHARE == pytest.approx(1 - math.pi / 16)


# the evidence, as the report states it


def replaced(image):
    """What the detector measures: NaN -> 0, +Inf -> 1, -Inf -> 0, then clipped to [0, 1]."""
    return np.clip(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_pixels_are_counted_then_measured_as_black_or_white(bad):
    image = np.full((8, 8), 0.25)  # not mid-grey: black and white are not alike to it
    image[2, 3] = image[5, 5] = bad
    report = detect(image)
    assert report.flagged and report.reason == "nonfinite" and report.nonfinite == 2
    assert isinstance(report.nonfinite, int)
    assert report.std == pytest.approx(replaced(image).std(), abs=1e-12)
    assert report.saturated_share == pytest.approx(2 / 64)
    assert report.neighbour_correlation == pytest.approx(np_lag_correlation(replaced(image)), abs=1e-12)


def test_values_outside_zero_to_one_are_clipped():
    image = np.where(checkerboard(16, 16, 4) > 0, 2.0, -1.0)
    report = detect(image)
    assert report.std == pytest.approx(0.5)  # of 0 and 1, half each
    assert report.saturated_share == 1.0 and report.reason == "saturated"


def test_std_is_the_largest_channels_population_std():
    image = np.zeros((8, 8, 3))
    image[..., 0] = 0.5
    image[..., 1] = np.where(checkerboard(8, 8, 4) > 0, 0.75, 0.25)  # std 0.25
    image[..., 2] = np.where(checkerboard(8, 8, 2) > 0, 0.6, 0.4)  # std 0.1
    assert detect(image).std == pytest.approx(0.25, abs=1e-12)


def test_a_flat_colour_is_constant_though_its_channels_differ():
    image = np.broadcast_to(np.array([1.0, 0.5, 0.0]), (16, 16, 3)).copy()
    report = detect(image)
    assert report.reason == "constant" and report.score == 0.0 and report.std == 0.0


def test_saturated_means_within_one_level_of_black_or_white():
    levels = np.array([0, 1, 2, 253, 254, 255], dtype=np.uint8)
    assert detect(np.tile(levels, (6, 1))).saturated_share == pytest.approx(4 / 6)  # 0, 1, 254, 255
    x = np.tile(np.array([0.0039, 0.00392, 0.0040, 0.9920, 0.9950, 0.9961, 1.0]), (7, 1))
    assert detect(x).saturated_share == pytest.approx(((x <= 1 / 255) | (x >= 254 / 255)).mean())


@pytest.mark.parametrize("image", [CAMERA, ASTRONAUT, COFFEE], ids=["camera", "astronaut", "coffee"])
def test_the_report_of_a_photograph(image):
    report = detect(image)
    chans = np.moveaxis(channels_last(image), -1, 0)
    assert not report.flagged and report.reason == "ok" and report.nonfinite == 0
    assert report.neighbour_correlation == pytest.approx(np.mean([np_lag_correlation(c) for c in chans]), abs=1e-12)
    assert report.high_frequency_share == pytest.approx(np.mean([np_high_frequency_share(c) for c in chans]), abs=1e-12)
    assert report.std == pytest.approx(max(c.std() for c in chans), abs=1e-12)
    assert report.saturated_share == pytest.approx(((chans <= 1 / 255) | (chans >= 254 / 255)).mean())
    assert report.as_dict() == {
        "flagged": False,
        "score": report.score,
        "reason": "ok",
        "neighbour_correlation": report.neighbour_correlation,
        "high_frequency_share": report.high_frequency_share,
        "std": report.std,
        "saturated_share": report.saturated_share,
        "nonfinite": 0,
    }


# the score and the verdict


def expected_score(report):
    """The documented score: the larger of (1 - neighbour correlation) and the high-frequency share
    relative to white noise's, each capped to [0, 1]."""
    return max(
        min(max(1 - report.neighbour_correlation, 0), 1), min(report.high_frequency_share / (1 - math.pi / 16), 1)
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["camera+noise", "uniform", "checkerboard", "blocks", "coffee"]),
    amount=st.floats(0.0, 1.0),
)
def test_the_score_is_the_documented_formula_and_stays_in_0_1(seed, kind, amount):
    rng = np.random.default_rng(seed)
    image = {
        "camera+noise": lambda: np.clip(CAMERA + amount * rng.normal(size=CAMERA.shape), 0, 1),
        "uniform": lambda: rng.uniform(0, 1, (48, 40)),
        "checkerboard": lambda: checkerboard(32, 32, 1 + int(amount * 4)),
        "blocks": lambda: blocks(36, 1 + int(amount * 5)),
        "coffee": lambda: COFFEE,
    }[kind]()
    report = detect(image)
    assert 0.0 <= report.score <= 1.0
    if report.reason != "constant":
        assert report.score == pytest.approx(expected_score(report), abs=1e-12)
    assert report.flagged == (report.reason != "ok")


def test_a_pixel_checkerboard_is_periodic_with_the_highest_score():
    report = detect(checkerboard(32, 32))  # correlation -1, every bit of power at the highest frequency
    assert report.reason == "periodic" and report.flagged
    assert report.score == 1.0 and report.neighbour_correlation == pytest.approx(-1.0)


def test_an_image_that_inverts_at_some_lag_is_periodic():
    report = detect(blocks(48, 3))  # inverts at 3 px; neighbours alike at 1 px only 1/3 of the time
    assert report.reason == "periodic"
    assert report.neighbour_correlation <= 0.5


@pytest.mark.parametrize(("size", "reason"), [(4, "saturated"), (6, "periodic"), (8, "periodic")])
def test_a_lag_is_measured_only_on_an_image_more_than_twice_as_large(size, reason):
    """blocks(n, 2) inverts at 2 px; 2 px is measured on 6 px and more, not on 4 px (which is then
    only mostly black and white)."""
    assert detect(blocks(size, 2)).reason == reason


def test_images_smaller_than_every_lag_are_judged():
    assert detect(checkerboard(3, 3)).reason == "periodic"  # 1 px is measured on 3 px
    assert detect(np.array([[0.2, 0.8], [0.4, 0.6]])).reason in ("ok", "noise")  # no lag measured, no error


def test_a_coarse_checkerboard_is_saturated_not_periodic():
    report = detect(checkerboard(64, 64, 16))  # neighbours alike: not a pixel-scale artifact
    assert report.reason == "saturated" and report.neighbour_correlation > 0.5


def test_the_reasons_in_order_of_precedence():
    board = checkerboard(16, 16)
    with_nan = board.copy()
    with_nan[0, 0] = math.nan
    assert detect(with_nan).reason == "nonfinite"  # before periodic
    flat_nan = np.full((16, 16), 0.5)
    flat_nan[3, 3] = math.nan
    assert detect(flat_nan).reason == "nonfinite"  # before constant
    assert detect(np.full((16, 16), 1.0)).reason == "constant"  # before saturated
    assert detect(board).reason == "periodic"  # before saturated
    salt_and_pepper = (np.random.default_rng(0).random((64, 64)) > 0.5).astype(float)
    assert detect(salt_and_pepper).reason == "saturated"  # before noise, though its score is a noise score
    assert detect(salt_and_pepper).score > noise.NOISE_SCORE


def test_the_limits_themselves_are_not_past_the_limits():
    """ "Below 1 %" and "more than 60 %": an image exactly at either limit is neither constant nor saturated."""
    step = np.full((10, 10), 0.1)
    step[:, 5:] = 0.1 + 0.02  # half 0.1, half 0.12: std 0.01, exactly so in float64 (found by trying)
    at_std = detect(step)
    assert at_std.std == CONSTANT_STD, "this image's std must be exactly the limit for the test to mean anything"
    assert at_std.reason == "ok"
    half = np.zeros((10, 10))
    half[:, 6:] = 0.5  # 6 of 10 columns black
    at_share = detect(half)
    assert at_share.saturated_share == SATURATED_SHARE and at_share.reason == "ok"


def test_the_measures_stay_on_the_images_device():
    """A GPU run's frames are judged where they are (here "meta", a device without data, stands in
    for the GPU: a host tensor mixed into the computation would be an error)."""
    x = torch.zeros(3, 16, 16, dtype=torch.float64, device="meta")
    assert to_channels(x).device.type == "meta"
    assert high_frequency_share(x).device.type == "meta"
    assert lag_correlation(x, 2).device.type == "meta"


def test_numpy_images_are_judged_without_torch():
    """`parity noise` judges files in numpy: importing torch alone costs ~0.9 GB, past its memory bound."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from parity.noise import detect; "
        "r = detect(np.random.default_rng(0).random((64, 64, 3))); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(r.reason)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "noise"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=st.sampled_from([(2, 2), (9, 7), (33, 64), (16, 16, 3), (4, 40, 24)]))
def test_numpy_and_torch_measure_alike(seed, shape):
    """One code path, two libraries: the same numbers to rounding, so a run's frames (torch) and a
    file of them (numpy) get one verdict."""
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    if seed % 3 == 0:
        x = np.round(x)  # saturated, periodic-ish
    if seed % 5 == 0:
        x.flat[seed % x.size] = np.nan
    a, b = noise._evidence(x), noise._evidence(torch.from_numpy(x))
    assert a == pytest.approx(b, abs=1e-9, nan_ok=True)
    assert detect(x).reason == detect(torch.from_numpy(x)).reason


@pytest.mark.parametrize("size", [3, 5, 9, 16])
def test_the_evidence_has_one_number_per_periodic_lag_even_below_its_size(size):
    """Lags an image is too small for read as 0 (no evidence of a period), never as a missing number."""
    values = noise._evidence(np.random.default_rng(size).random((size, size)))
    assert len(values) == 5 + len(noise.PERIODIC_LAGS)
    assert values[5 + sum(size > 2 * lag for lag in noise.PERIODIC_LAGS) :] == [0.0] * sum(
        size <= 2 * lag for lag in noise.PERIODIC_LAGS
    )
