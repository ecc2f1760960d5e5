"""The noise detector on real photographs (scikit-image) and on synthetic noise."""

import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import util

from parity import calibrate
from parity.noise import NOISE_SCORE, detect

CAMERA = util.img_as_float(skimage.data.camera())[::4, ::4]  # 128 x 128


def test_calibration_has_no_false_flags_and_no_misses():
    df = calibrate.table()
    benign, flagged = df[df.expected == "ok"], df[df.expected != "ok"]
    assert len(benign) >= 90 and len(flagged) >= 25
    assert benign.correct.all(), benign[~benign.correct].to_string()
    assert flagged.correct.all(), flagged[~flagged.correct].to_string()
    # the threshold sits between the two populations, with room on both sides
    assert benign.score.max() < NOISE_SCORE < flagged[flagged.expected == "noise"].score.min()


def test_calibration_verdicts_are_the_same_for_tensors():
    """The table is measured in numpy (as `parity noise` judges files); a run judges its frames as
    torch tensors. Every calibration input gets the same verdict and score either way."""
    import torch

    inputs = [p for name in calibrate.PHOTOS for _, p in calibrate.benign_variants(calibrate.photo(name))]
    inputs += [p for *_, p, _ in calibrate.flagged_inputs(np.random.default_rng(0))]
    for pixels in inputs:
        as_array, as_tensor = detect(pixels), detect(torch.from_numpy(np.asarray(pixels)))
        assert as_array.reason == as_tensor.reason
        assert as_array.score == pytest.approx(as_tensor.score, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), low=st.floats(0.0, 0.4), extra=st.floats(0.02, 0.4))
def test_adding_more_noise_never_lowers_the_score(seed, low, extra):
    z = np.random.default_rng(seed).normal(0, 1, CAMERA.shape)
    less = detect(np.clip(CAMERA + low * z, 0, 1)).score
    more = detect(np.clip(CAMERA + (low + extra) * z, 0, 1)).score
    assert more >= less - 1e-3


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([32, 64, 128]), channels=st.sampled_from([1, 3]))
def test_pure_noise_is_always_flagged_as_noise(seed, size, channels):
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    report = detect(rng.uniform(0, 1, shape))
    assert report.flagged and report.reason == "noise" and report.score > NOISE_SCORE


@given(level=st.floats(0.0, 1.0))
def test_a_constant_image_is_constant_not_noise(level):
    report = detect(np.full((32, 32, 3), level))
    assert report.flagged and report.reason == "constant"


def test_layouts_agree_and_uint8_equals_float():
    rgb = util.img_as_float(skimage.data.astronaut())[::4, ::4]
    a, b = detect(rgb), detect(np.moveaxis(rgb, -1, 0))
    assert a.score == pytest.approx(b.score)
    c = detect((rgb * 255).round().astype(np.uint8))
    assert c.score == pytest.approx(a.score, abs=0.01)


def test_cli_noise_flags_noise_files_and_exits_1(tmp_path, capsys):
    from PIL import Image

    from parity.cli import main  # imported here: the noise detector's tests need not load the CLI

    photo, noise = tmp_path / "photo.png", tmp_path / "noise.npy"
    Image.fromarray(skimage.data.coffee()).save(photo)
    np.save(noise, np.random.default_rng(0).random((2, 3, 48, 48)))
    assert main(["noise", str(photo)]) == 0
    assert main(["noise", str(photo), str(noise)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{photo}: ok") and out[-1].startswith(f"{noise}: NOISE")
    assert main(["noise", str(tmp_path / "missing.png")]) == 2
