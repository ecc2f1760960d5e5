"""`parity noise` on files: bad inputs are one-line errors, values are scaled by their dtype's range,
big frames are judged on tiles (parity/image_files.py), and every calibration input goes through
unchanged."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from skimage import util

from parity import calibrate, image_files
from parity.cli import main
from parity.noise import NoiseReport, detect

CAMERA = skimage.data.camera()  # 512 x 512 uint8
ASTRONAUT = skimage.data.astronaut()  # 512 x 512 x 3 uint8
INT32_PER_LEVEL = np.iinfo(np.int32).max // 255  # an 8-bit level spread over the int32 range


def noise_cli(capsys, *args) -> tuple[int, list[str], list[str]]:
    code = main(["noise", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def save_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG (grayscale or RGB), written by hand: PIL writes 16-bit grayscale only."""
    height, width = pixels.shape[:2]
    colour = 0 if pixels.ndim == 2 else 2
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def upscaled(image: np.ndarray, size: int) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


# --- inputs that cannot be judged: exit 2, one line on stderr, nothing on stdout ---------------


def _npy(array):
    def make(path: Path) -> Path:
        np.save(path.with_suffix(".npy"), array)
        return path.with_suffix(".npy")

    return make


def _file(suffix: str, content: bytes):
    def make(path: Path) -> Path:
        path.with_suffix(suffix).write_bytes(content)
        return path.with_suffix(suffix)

    return make


BAD = {
    "0x0 array": (_npy(np.zeros((0, 0))), "empty array of shape (0, 0): no pixels to judge"),
    "1-D array": (_npy(np.zeros(16)), "a 1-D array of shape (16,) is not an image"),
    "0-D array": (_npy(np.array(0.5)), "a 0-D array of shape () is not an image"),
    "0-length axis": (_npy(np.zeros((64, 0, 3))), "empty array of shape (64, 0, 3)"),
    "0 frames": (_npy(np.zeros((0, 3, 64, 64))), "empty array of shape (0, 3, 64, 64)"),
    "empty .npy": (_file(".npy", b""), "empty file (0 bytes)"),
    "empty .png": (_file(".png", b""), "empty file (0 bytes)"),
    "not an image": (_file(".png", b"hello"), "cannot read (UnidentifiedImageError"),
    "5x5x5": (_npy(np.zeros((5, 5, 5))), "frames of shape (5, 5, 5) are not images"),
    "one row": (_npy(np.zeros((1, 64))), "frames of 1x64 px are too small to judge"),
    "complex": (_npy(np.zeros((8, 8), complex)), "values of dtype complex128 are not pixels"),
    "object": (_npy(np.array([[1, None]])), "cannot read (ValueError"),
    "floats 0..255": (_npy(ASTRONAUT.astype(np.float32)), "values span [0, 255], but floats are read as 0..1"),
    "floats -1..1": (_npy(util.img_as_float(CAMERA) * 2 - 1), "(e.g. --range=-1,1)"),
    "int32 0..255": (_npy(CAMERA.astype(np.int32)), "scaled by the int32 maximum 2147483647 they would all be black"),
    "int64 0..255": (_npy(CAMERA.astype(np.int64)), "values span [0, 255]: scaled by the int64 maximum"),
    "uint16 0..255": (_npy(CAMERA.astype(np.uint16)), "(e.g. --range 0,255)"),
    "negative int16": (_npy(CAMERA.astype(np.int16) - 128), "values span [-128, 127], but int16 values"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_input_is_one_line_and_exit_2(name, tmp_path, capsys):
    make, message = BAD[name]
    path = make(tmp_path / "input")
    code, out, err = noise_cli(capsys, path)
    assert code == 2 and out == []
    assert len(err) == 1 and err[0].startswith(f"parity: error: {path}: ") and message in err[0], err


def test_the_other_files_are_still_judged_after_a_bad_one(tmp_path, capsys):
    photo, bad = tmp_path / "photo.png", tmp_path / "bad.npy"
    Image.fromarray(ASTRONAUT).save(photo)
    np.save(bad, np.zeros(3))
    code, out, err = noise_cli(capsys, bad, photo)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"parity: error: {bad}:")
    assert len(out) == 1 and out[0].startswith(f"{photo}: ok")


def test_a_bad_range_is_one_line_and_exit_2(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(ASTRONAUT).save(photo)
    for text in ("0;255", "255,0", "0,nan", "1,2,3"):
        code, out, err = noise_cli(capsys, "--range", text, photo)
        assert code == 2 and out == [] and len(err) == 1 and err[0].startswith(f"parity: error: --range {text!r}")


# --- value ranges ------------------------------------------------------------------------------


def test_a_16_bit_png_of_a_photo_is_ok(tmp_path, capsys):
    gray = tmp_path / "camera16.png"
    Image.fromarray(CAMERA.astype(np.uint16) * 257).save(gray)  # PIL: a 16-bit grayscale PNG
    rgb = save_png16(tmp_path / "astronaut16.png", ASTRONAUT.astype(np.uint16) * 257)
    assert Image.open(gray).mode == "I;16"
    code, out, _ = noise_cli(capsys, gray, rgb)
    assert code == 0 and out[0].startswith(f"{gray}: ok") and out[1].startswith(f"{rgb}: ok")
    # the same score as the 8-bit image: 16-bit values are scaled by 65535
    eight_bit = detect(CAMERA).score
    assert f"score={eight_bit:.3f}" in out[0]


def test_floats_in_0_255_need_range_and_then_are_ok(tmp_path, capsys):
    path = tmp_path / "frames.npy"
    np.save(path, ASTRONAUT.astype(np.float32))
    code, _, err = noise_cli(capsys, path)
    assert code == 2 and "values span [0, 255]" in err[0] and "--range 0,255" in err[0]
    code, out, err = noise_cli(capsys, "--range", "0,255", path)
    assert code == 0 and err == [] and out[0].startswith(f"{path}: ok")
    assert f"score={detect(ASTRONAUT).score:.3f}" in out[0]


def test_floats_in_minus_1_1_with_range_are_ok(tmp_path, capsys):
    path = tmp_path / "frames.npy"
    np.save(path, util.img_as_float(ASTRONAUT) * 2 - 1)
    code, out, _ = noise_cli(capsys, "--range=-1,1", path)
    assert code == 0 and out[0].startswith(f"{path}: ok")


def test_rounding_slack_outside_0_1_is_accepted(tmp_path, capsys):
    path = tmp_path / "frames.npy"
    pixels = util.img_as_float(CAMERA)
    pixels[0, 0], pixels[0, 1] = -0.0009, 1.0009
    np.save(path, pixels)
    assert noise_cli(capsys, path)[0] == 0


def test_int32_arrays(tmp_path, capsys):
    full, low = tmp_path / "full.npy", tmp_path / "low.npy"
    np.save(full, CAMERA.astype(np.int32) * INT32_PER_LEVEL)  # a photo over the int32 range
    np.save(low, CAMERA.astype(np.int32))  # 0..255 in an int32 array
    code, out, _ = noise_cli(capsys, full)
    assert code == 0 and out[0].startswith(f"{full}: ok")
    code, _, err = noise_cli(capsys, low)
    assert code == 2 and "values span [0, 255]" in err[0] and "--range 0,255" in err[0]
    code, out, _ = noise_cli(capsys, "--range", "0,255", low)
    assert code == 0 and out[0].startswith(f"{low}: ok")


def test_bool_is_0_1_and_uint8_with_range_0_255_is_unchanged(tmp_path, capsys):
    board = (np.indices((64, 64)).sum(0) % 2).astype(bool)  # a 1 px checkerboard
    path = tmp_path / "board.npy"
    np.save(path, board)
    code, out, _ = noise_cli(capsys, path)
    assert code == 1 and out[0].startswith(f"{path}: PERIODIC")
    frames = image_files.from_array(ASTRONAUT, (0.0, 255.0))
    (tile,) = next(iter(frames))
    assert detect(tile) == detect(ASTRONAUT)


@pytest.mark.parametrize("value_range", [None, "0,255"])
def test_nan_is_still_flagged_nonfinite(value_range, tmp_path, capsys):
    pixels = ASTRONAUT.astype(np.float64) / (255.0 if value_range is None else 1.0)
    pixels[100:110, 200:220] = np.nan
    pixels[300, 300] = np.inf
    path = tmp_path / "nan.npy"
    np.save(path, pixels)
    code, out, _ = noise_cli(capsys, path, *(["--range", value_range] if value_range else []))
    assert code == 1 and out[0].startswith(f"{path}: NONFINITE")


def test_nan_between_the_tiles_of_a_big_frame_is_flagged(tmp_path, capsys):
    pixels = util.img_as_float(upscaled(CAMERA, 2000)).astype(np.float32)
    pixels[1300, 1300] = np.nan  # grid tiles cover rows 0-511, 744-1255 and 1488-1999 only
    path = tmp_path / "frame.npy"
    np.save(path, pixels)
    code, out, _ = noise_cli(capsys, path)
    assert code == 1 and out[0].startswith(f"{path}: NONFINITE")
    (tiles,) = image_files.from_array(pixels)
    assert len(tiles) == 10 and np.isnan(tiles[-1]).any()  # the grid, plus the tile around the NaN
    assert not any(np.isnan(tile).any() for tile in tiles[:-1])


# --- big frames: tiles ---------------------------------------------------------------------------


def grid_crops(frame: np.ndarray, size: int = image_files.TILE) -> list[np.ndarray]:
    """The documented 3 x 3 grid, cut here independently of image_files."""
    height, width = frame.shape[:2]
    rows = [0, (height - size) // 2, height - size] if height > image_files.MAX_SIDE else [0]
    cols = [0, (width - size) // 2, width - size] if width > image_files.MAX_SIDE else [0]
    row_size = size if height > image_files.MAX_SIDE else height
    col_size = size if width > image_files.MAX_SIDE else width
    return [frame[r : r + row_size, c : c + col_size] for r in rows for c in cols]


def line(path: Path, report: NoiseReport) -> str:
    verdict = report.reason.upper() if report.flagged else "ok"
    return (
        f"{path}: {verdict} score={report.score:.3f} neighbour_correlation={report.neighbour_correlation:.3f} "
        f"high_frequency_share={report.high_frequency_share:.3f}"
    )


def test_a_big_image_gets_the_verdict_of_its_tiles(tmp_path, capsys):
    frame = np.array(Image.fromarray(skimage.data.coffee()).resize((2200, 1500), Image.Resampling.BICUBIC))
    path = tmp_path / "coffee.png"
    Image.fromarray(frame).save(path)
    crops = grid_crops(frame)
    (tiles,) = image_files.load(path)
    assert len(tiles) == 9 and all(np.array_equal(a, b) for a, b in zip(tiles, crops, strict=True))
    expected = image_files.worst_tile([detect(crop) for crop in crops])
    code, out, _ = noise_cli(capsys, path)
    assert code == 0 and out == [line(path, expected) + " (1500x2200 judged on 9 tiles of up to 512x512)"]


def test_a_wide_frame_is_tiled_along_its_long_side_only():
    frame = np.zeros((600, 3000, 3), np.uint8)
    (tiles,) = image_files.from_array(frame)
    assert [t.shape for t in tiles] == [(600, 512, 3)] * 3
    channels_first = image_files.from_array(np.zeros((3, 600, 3000), np.float32))
    assert [t.shape for t in next(iter(channels_first))] == [(3, 600, 512)] * 3


def test_a_4000_px_photo_is_ok_and_4000_px_noise_is_noise(tmp_path, capsys):
    photo, noise = tmp_path / "photo.png", tmp_path / "noise.png"
    Image.fromarray(upscaled(ASTRONAUT, 4000)).save(photo, compress_level=1)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (4000, 4000, 3), dtype=np.uint8)).save(noise, compress_level=1)
    code, out, _ = noise_cli(capsys, photo, noise)
    assert code == 1
    assert out[0].startswith(f"{photo}: ok") and out[0].endswith("(4000x4000 judged on 9 tiles of up to 512x512)")
    assert out[1].startswith(f"{noise}: NOISE")


def test_a_big_photo_with_a_black_border_is_ok(tmp_path, capsys):
    canvas = np.zeros((4000, 4000, 3), np.uint8)  # 8 of the 9 tiles are black (constant); the frame is not
    canvas[512:3488, 512:3488] = upscaled(ASTRONAUT, 2976)
    path = tmp_path / "framed.png"
    Image.fromarray(canvas).save(path, compress_level=1)
    assert [detect(crop).reason for crop in grid_crops(canvas)].count("constant") == 8
    code, out, _ = noise_cli(capsys, path)
    assert code == 0 and out[0].startswith(f"{path}: ok")


@pytest.mark.parametrize("kind", ["photo", "noise", "noisy photo"])
def test_tiles_and_the_whole_frame_agree(kind):
    rng = np.random.default_rng(0)
    frame = util.img_as_float(upscaled(ASTRONAUT, 1100))
    if kind == "noise":
        frame = rng.uniform(0, 1, frame.shape)
    elif kind == "noisy photo":
        frame = np.clip(frame + rng.normal(0, 0.5, frame.shape), 0, 1)
    (tiles,) = image_files.from_array(frame)
    assert len(tiles) == 9
    whole, tiled = detect(frame), image_files.worst_tile([detect(tile) for tile in tiles])
    assert tiled.reason == whole.reason
    # the frame's score pools its tiles': at most about the worst tile's (tiles never dilute noise)
    assert whole.score <= tiled.score + 0.02


def report(reason: str, score: float) -> NoiseReport:
    return NoiseReport(reason != "ok", score, reason, 1 - score, 0.0, 0.1, 0.0, int(reason == "nonfinite"))


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ([("ok", 0.2)], ("ok", 0.2)),
        ([("constant", 0.0)], ("constant", 0.0)),
        ([("ok", 0.1), ("constant", 0.0), ("ok", 0.3)], ("ok", 0.3)),  # a flat tile of sky
        ([("saturated", 0.5), ("ok", 0.1)], ("ok", 0.1)),
        ([("constant", 0.0), ("saturated", 0.4)], ("saturated", 0.4)),  # every tile: the frame is
        ([("ok", 0.1), ("noise", 0.8), ("noise", 0.95)], ("noise", 0.95)),
        ([("constant", 0.0), ("periodic", 0.6)], ("periodic", 0.6)),
        ([("noise", 1.0), ("nonfinite", 0.2)], ("nonfinite", 0.2)),
    ],
)
def test_worst_tile(reasons, expected):
    chosen = image_files.worst_tile([report(*r) for r in reasons])
    assert (chosen.reason, chosen.score) == expected


@given(length=st.integers(2, 20_000))
def test_tile_windows_cover_corners_and_centre_within_the_axis(length):
    windows = image_files._windows(length)
    if length <= image_files.MAX_SIDE:
        assert windows == [slice(0, length)]
    else:
        assert [w.stop - w.start for w in windows] == [image_files.TILE] * 3
        assert windows[0].start == 0 and windows[-1].stop == length
        middle = windows[1]
        assert abs((middle.start + middle.stop) - length) <= 1  # centred


# --- calibration inputs go through unchanged ----------------------------------------------------


def calibration_inputs():
    for name in calibrate.PHOTOS:
        for variant, pixels in calibrate.benign_variants(calibrate.photo(name)):
            yield f"{name} {variant}", pixels
    for image, variant, pixels, _ in calibrate.flagged_inputs(np.random.default_rng(0)):
        yield f"{image} {variant}", pixels


def test_every_calibration_input_reaches_the_detector_unchanged():
    count = 0
    for name, pixels in calibration_inputs():
        assert max(pixels.shape[:2]) <= image_files.MAX_SIDE, name
        frames = image_files.from_array(pixels)
        assert len(frames) == 1 and frames.note() == "", name
        (tile,) = next(iter(frames))
        assert tile.dtype == pixels.dtype and np.array_equal(tile, pixels, equal_nan=True), name
        count += 1
    assert count >= 120


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=40), elements=st.floats(0, 1))
)
def test_floats_in_0_1_up_to_max_side_are_passed_as_they_are(pixels):
    if pixels.ndim == 3 and pixels.shape[-1] > 4 and pixels.shape[0] > 4:
        return  # not an image layout
    (tile,) = next(iter(image_files.from_array(pixels)))
    assert tile.dtype == pixels.dtype and np.array_equal(tile, pixels)


# --- property: a photo's verdict does not depend on the dtype it is stored in --------------------

PHOTOS = {"camera": CAMERA, "astronaut": ASTRONAUT, "coffee": skimage.data.coffee(), "brick": skimage.data.brick()}


@settings(max_examples=12, deadline=None)
@given(
    name=st.sampled_from(sorted(PHOTOS)),
    size=st.integers(48, 400),
    top=st.floats(0, 1),
    left=st.floats(0, 1),
    noisy=st.booleans(),
)
def test_a_photo_gets_the_same_verdict_in_every_dtype(name, size, top, left, noisy):
    photo = PHOTOS[name]
    y, x = round(top * (photo.shape[0] - size)), round(left * (photo.shape[1] - size))
    pixels = photo[y : y + size, x : x + size]
    if noisy:  # the property holds for flagged images too
        rng = np.random.default_rng(size)
        pixels = np.clip(pixels + rng.normal(0, 64, pixels.shape), 0, 255).astype(np.uint8)
    reference = detect(pixels)
    with tempfile.TemporaryDirectory() as tmp:
        png8, png16, npy16 = Path(tmp) / "8.png", Path(tmp) / "16.png", Path(tmp) / "16.npy"
        Image.fromarray(pixels).save(png8)
        save_png16(png16, pixels.astype(np.uint16) * 257)
        np.save(npy16, pixels.astype(np.uint16) * 257)
        stored = [image_files.load(path) for path in (png8, png16, npy16)]
        stored.append(image_files.from_array(pixels.astype(np.float32) / 255))
        stored.append(image_files.from_array(pixels.astype(np.int32) * INT32_PER_LEVEL))
        for frames in stored:
            (tiles,) = frames
            judged = image_files.worst_tile([detect(tile) for tile in tiles])
            assert judged.reason == reference.reason
            assert judged.score == pytest.approx(reference.score, abs=1e-6)


def test_parity_noise_never_imports_torch(tmp_path):
    """Files are judged in numpy: `import torch` alone costs ~0.9 GB, past the command's memory bound."""
    import subprocess
    import sys

    path = tmp_path / "photo.png"
    Image.fromarray(ASTRONAUT).save(path)
    code = (
        "import sys; from parity.cli import main; rc = main(['noise', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ok ")
