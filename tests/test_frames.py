"""Frame metrics computed in torch (on the frames' device) must equal scikit-image's, on real photos."""

import io

import numpy as np
import pytest
import skimage.data
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from parity import frames


def _as_frames(image_u8: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x H x W in [0, 1] (the canonical frames layout)."""
    return torch.from_numpy(image_u8).permute(2, 0, 1).unsqueeze(0).double() / 255.0


def _variants(photo: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    noisy = np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8)
    shifted = np.roll(photo, 3, axis=1)
    darker = (photo * 0.8).astype(np.uint8)
    return [noisy, shifted, darker]


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_ssim_psnr_and_mean_abs_match_scikit_image_on_photos(name):
    photo = getattr(skimage.data, name)()[:200, :240]
    for other in _variants(photo):
        rows = frames.relative(_as_frames(photo), _as_frames(other))
        assert len(rows) == 1
        expected_ssim = structural_similarity(photo, other, channel_axis=-1, data_range=255)
        expected_psnr = peak_signal_noise_ratio(photo, other, data_range=255)
        assert rows[0]["ssim"] == pytest.approx(expected_ssim, abs=1e-9)
        assert rows[0]["psnr_db"] == pytest.approx(expected_psnr, abs=1e-9)
        expected_mean_abs = np.abs(photo.astype(np.int16) - other.astype(np.int16)).mean()
        assert rows[0]["mean_abs_u8"] == pytest.approx(expected_mean_abs, abs=1e-9)


def test_eight_bit_values_are_those_of_an_8_bit_image_nan_and_range_included():
    x = torch.tensor([[[[float("nan"), -0.2, 0.5, 1.7, 0.0019607843, 0.998]]]]).double()  # 1 x 1 x 1 x 6
    frame = x[0].permute(1, 2, 0).numpy()
    expected = (np.clip(np.nan_to_num(frame, nan=0.0), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    got = frames.eight_bit(x)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(got, expected.astype(np.float64))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.0, 0.3))
def test_ssim_is_symmetric_and_one_only_for_equal_frames(seed, scale):
    generator = torch.Generator().manual_seed(seed)
    a = (torch.rand(3, 16, 16, generator=generator, dtype=torch.float64) * 255).round()
    b = (a + scale * 255 * torch.randn(3, 16, 16, generator=generator, dtype=torch.float64)).clamp(0, 255).round()
    assert frames.ssim(a, b) == pytest.approx(frames.ssim(b, a), abs=1e-12)
    assert frames.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    if not torch.equal(a, b):
        assert frames.ssim(a, b) < 1.0


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(1, 40), width=st.integers(1, 40), channels=st.sampled_from([1, 3, 4]), seed=st.integers(0, 2**16)
)
def test_png_files_decode_to_the_same_pixels(height, width, channels, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(frames.png_bytes(pixels))))
    assert np.array_equal(decoded.reshape(pixels.shape), pixels)


def test_a_saved_frame_is_the_photo_as_eight_bit_values(tmp_path):
    photo = skimage.data.astronaut()
    tensor = torch.from_numpy(photo).permute(2, 0, 1)[None].double() / 255
    assert frames.write_pngs(frames.png_pixels(tensor, "port"), tmp_path) == ["port.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "port.png")), photo)
