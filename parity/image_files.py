"""The files `parity noise` judges: images and .npy frame arrays, read, checked, scaled and tiled.

Everything here happens before `parity.noise.detect` sees a pixel, and imports neither torch nor
a pipeline library, so a bad file costs a fraction of a second and one line
(`parity: error: <file>: ...`, exit 2), never a traceback.

**Value range.** The detector reads values in [0, 1]; each input is scaled by its dtype's range:
uint8 and 8-bit images by 255, uint16 and 16-bit PNGs by 65535, other integer dtypes by their
maximum, bool as 0/1, floats taken as [0, 1]. Floats outside [0, 1] (beyond RANGE_SLACK), negative
integers, and integers wider than 8 bits whose values all lie in the darkest 1/255 of their dtype
(e.g. int64 holding 0..255, which scaling would turn uniformly black) are an error naming the span
they have. `--range LOW,HIGH` maps LOW..HIGH to 0..1 for every input instead (values outside it are
clipped by the detector, like any value outside 0..1). NaN and Inf pass through unscaled: the
detector flags them.

**Size.** A frame up to MAX_SIDE pixels a side is judged whole, exactly as before (every input of
the calibration, `python -m parity.calibrate`, is at most 512 px). A larger frame is judged on a
fixed 3 x 3 grid of TILE x TILE tiles at native resolution (the four corners, the middles of the
edges and the centre), plus the tile around the first non-finite value if there is one: see
`worst_tile` for how their verdicts combine and why they stand for the whole frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parity.errors import ParityError

if TYPE_CHECKING:
    from parity.noise import NoiseReport

MAX_SIDE = 1024  # frames up to this many pixels a side are judged whole
TILE = 512  # a larger frame: a 3 x 3 grid of tiles of this size (the calibrated regime: <= 512 px)
MIN_SIDE = 2  # a lag-1 neighbour in each direction: anything thinner is a line, not an image
RANGE_SLACK = 1e-3  # floats this far outside [0, 1] are rounding, not another range
MAX_CHANNELS = 4  # as parity.noise.to_channels: C <= 4 (alpha, if any, is dropped there)
_SCAN_ITEMS = 1 << 20  # values per block when scanning a whole (possibly memory-mapped) array
_STRIP_ROWS = 256  # rows per strip when copying a decoded image out of PIL

# PIL modes the detector cannot read as they are, and what they become (palette -> its colours).
_PIL_CONVERT = {
    "P": "RGB",
    "PA": "RGB",
    "LA": "L",
    "La": "L",
    "RGBa": "RGB",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
_PIL_AS_IS = {"1", "L", "RGB", "RGBA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def parse_range(text: str) -> tuple[float, float]:
    """`--range LOW,HIGH` -> (LOW, HIGH), finite with LOW < HIGH."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ParityError(f"--range {text!r}: expected LOW,HIGH with LOW < HIGH, e.g. --range 0,255 (--range=-1,1)")
    return low, high


@dataclass(frozen=True)
class Scale:
    """How stored values map to the detector's [0, 1]: (value - low) / (high - low). `as_is`: the
    detector already reads this dtype so (uint8 / 255, bool as 0/1, floats in [0, 1]), and the
    pixels go to it unconverted."""

    low: float
    high: float
    as_is: bool

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """A writable, native-byte-order copy of `pixels`, scaled (float64) unless `as_is`."""
        if self.as_is:
            return np.array(pixels, dtype=pixels.dtype.newbyteorder("="))
        scaled = np.array(pixels, dtype=np.float64)
        scaled -= self.low
        scaled /= self.high - self.low
        return scaled


@dataclass(frozen=True)
class Frames:
    """One file's frames, checked and scaled; iterating gives each frame's tiles (arrays ready for
    `parity.noise.detect`; a frame up to MAX_SIDE a side is one tile, itself)."""

    path: Path
    count: int
    height: int
    width: int
    tiles_per_frame: int
    _frames: Any  # a callable returning an iterator over frames' tiles, or a list of them

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        return iter(self._frames) if isinstance(self._frames, list) else self._frames()

    def __len__(self) -> int:
        return self.count

    def note(self) -> str:
        """What the verdict line adds: how many frames and tiles it is the verdict over."""
        parts = [f"worst of {self.count} frames"] if self.count > 1 else []
        if self.tiles_per_frame > 1:
            parts.append(f"{self.height}x{self.width} judged on {self.tiles_per_frame} tiles of up to {TILE}x{TILE}")
        return f" ({'; '.join(parts)})" if parts else ""


def load(path: Path, value_range: tuple[float, float] | None = None) -> Frames:
    """Read an image (PNG, JPEG, ... as PIL reads it) or a .npy array (H x W[ x C], C x H x W, or a
    stack of those), check its shape and values, and make its frames' tiles. A .npy is memory-mapped
    and tiled frame by frame as it is iterated; an image's tiles are cut at once and the decoded
    image dropped, so it is never in memory beside the detector's work."""
    if not path.is_file():
        raise ParityError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ParityError(f"{path}: empty file (0 bytes)")
    full_scale = None
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            array, full_scale = _read_image(path)
    except Exception as exc:
        raise ParityError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    return from_array(array, value_range, path, full_scale=full_scale, lazy=path.suffix.lower() == ".npy")


def from_array(
    array: np.ndarray,
    value_range: tuple[float, float] | None = None,
    path: Path = Path("<array>"),
    full_scale: int | None = None,
    lazy: bool = False,
) -> Frames:
    """`load` after reading: check `array`'s shape and values, scale them, cut its frames' tiles
    (now, or frame by frame as the result is iterated if `lazy`). `full_scale` overrides the
    dtype's maximum (a 16-bit PNG that PIL hands over as int32); `path` names the input in errors."""
    channels_first = _check_shape(path, array)
    scale = _scale(path, array, value_range, full_scale)
    spatial = (1, 2) if channels_first else (0, 1)
    frame_shape = array.shape[-3:] if array.ndim > 3 else array.shape
    height, width = frame_shape[spatial[0]], frame_shape[spatial[1]]
    leading = array.shape[:-3] if array.ndim > 3 else ()

    def frames() -> Iterator[list[np.ndarray]]:
        for index in np.ndindex(leading):  # views of a memory-mapped stack, never a reshaped copy
            yield tiles(array[index], spatial, scale)

    per_frame = len(_windows(height)) * len(_windows(width))
    return Frames(path, math.prod(leading), height, width, per_frame, frames if lazy else list(frames()))


def tiles(frame: np.ndarray, spatial: tuple[int, int], scale: Scale) -> list[np.ndarray]:
    """The pieces of one frame the detector judges, scaled: the frame itself up to MAX_SIDE a side,
    else the 3 x 3 grid of `_windows` (plus the tile around its first non-finite value, if any)."""
    height, width = frame.shape[spatial[0]], frame.shape[spatial[1]]
    rows, cols = _windows(height), _windows(width)
    boxes = [(row, col) for row in rows for col in cols]
    if len(boxes) > 1 and frame.dtype.kind == "f":
        where = _first_nonfinite(frame, spatial[0])
        if where is not None:
            y, x = where[spatial[0]], where[spatial[1]]
            if not any(r.start <= y < r.stop and c.start <= x < c.stop for r, c in boxes):
                size = rows[0].stop - rows[0].start, cols[0].stop - cols[0].start
                boxes.append((_around(y, size[0], height), _around(x, size[1], width)))
    out = []
    for row, col in boxes:
        window = [slice(None)] * frame.ndim
        window[spatial[0]], window[spatial[1]] = row, col
        out.append(scale.apply(frame[tuple(window)]))
    return out


def _windows(length: int) -> list[slice]:
    """Tile windows along one axis: the whole axis up to MAX_SIDE; beyond it TILE pixels at the
    start, the middle and the end."""
    if length <= MAX_SIDE:
        return [slice(0, length)]
    return [slice(start, start + TILE) for start in (0, (length - TILE) // 2, length - TILE)]


def _around(index: int, size: int, length: int) -> slice:
    """A window of `size` pixels centred on `index`, shifted to lie within an axis of `length`."""
    start = max(0, min(index - size // 2, length - size))
    return slice(start, start + size)


# Pixel-scale reasons: a property of the pixels and their neighbours, so one tile showing it is
# evidence about the frame. "constant" and "saturated" are properties of the whole frame (a tile
# of clear sky or a black border is constant; the photograph around it is not).
_PIXEL_SCALE = ("nonfinite", "periodic", "noise")


def worst_tile(reports: list[NoiseReport]) -> NoiseReport:
    """One verdict for a frame from its tiles' reports (a single report is returned as it is).

    Why the tiles' verdict stands for the frame's: the noise score and the periodic check read
    pixel-scale statistics (the correlation of neighbours 1..4 px apart, the share of spectral power
    above half the Nyquist frequency), means over pixel pairs. At native resolution a 512 x 512 tile
    (262,144 pixels, as many as the largest calibration images) estimates them for its part of the
    frame; over the whole frame they pool the tiles' (brightness changes from tile to tile only add
    neighbour correlation), so the frame's score is about the tiles' weighted mean and at most their
    maximum. The noise of a broken decoder or scheduler covers the frame, so the corners, the edges
    and the centre all show it. Hence: a tile flagged for a pixel-scale reason decides (non-finite
    first, then the highest score). A frame is constant or saturated only if every tile is: a tile of
    clear sky or of a black border is constant, the photograph around it is not. Otherwise the frame
    is ok, with the highest-scoring tile's numbers. Limit: noise confined to a patch between the
    sampled tiles (about 15 % of a 4000 x 4000 frame) is not seen.
    """
    local = [r for r in reports if r.reason in _PIXEL_SCALE]
    if local:
        return max(local, key=lambda r: (r.reason == "nonfinite", r.score))
    if all(r.flagged for r in reports):
        return max(reports, key=lambda r: r.score)
    return max((r for r in reports if not r.flagged), key=lambda r: r.score)


def _read_image(path: Path) -> tuple[np.ndarray, int | None]:
    """The decoded pixels (uint8, bool, uint16, int32 or float32) and, for a 16-bit PNG that PIL
    opens in its 32-bit "I" mode, the full scale 65535."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened
        if image.mode in _PIL_CONVERT or image.mode not in _PIL_AS_IS:
            image = image.convert(_PIL_CONVERT.get(image.mode, "RGB"))
        full_scale = 65535 if image.mode == "I" and opened.format == "PNG" else None
        return _pil_pixels(image), full_scale


def _pil_pixels(image: Any) -> np.ndarray:
    """np.asarray(image), copied strip by strip: np.asarray on a whole 4000 x 4000 image holds two
    more copies of it at its peak (PIL's bytes, joined)."""
    height, width = image.height, image.width
    if height == 0 or width == 0:
        return np.empty((height, width))
    first = np.asarray(image.crop((0, 0, width, 1)))
    pixels = np.empty((height, *first.shape[1:]), first.dtype)
    for top in range(0, height, _STRIP_ROWS):
        pixels[top : top + _STRIP_ROWS] = np.asarray(image.crop((0, top, width, min(top + _STRIP_ROWS, height))))
    return pixels


def _check_shape(path: Path, array: np.ndarray) -> bool:
    """Raise ParityError unless `array` is frames the detector can judge; True if channels first.
    The layout rule is parity.noise.to_channels': H x W x C when C <= 4 < H, else C x H x W with C <= 4."""
    if array.ndim < 2:
        raise ParityError(
            f"{path}: a {array.ndim}-D array of shape {tuple(array.shape)} is not an image: expected "
            "H x W, H x W x C or C x H x W (C <= 4), or a stack of those"
        )
    if array.size == 0:
        raise ParityError(f"{path}: empty array of shape {tuple(array.shape)}: no pixels to judge")
    kind = array.dtype.kind
    if kind not in "buif":
        raise ParityError(f"{path}: values of dtype {array.dtype} are not pixels (expected bool, integers or floats)")
    frame = array.shape[-3:] if array.ndim > 3 else array.shape
    channels_first = False
    if len(frame) == 3:
        channels_last = frame[-1] <= MAX_CHANNELS < frame[0]
        channels_first = not channels_last
        if channels_first and frame[0] > MAX_CHANNELS:
            raise ParityError(
                f"{path}: frames of shape {frame} are not images: expected H x W x C or C x H x W with "
                f"C <= {MAX_CHANNELS} channels"
            )
    height, width = (frame[1], frame[2]) if channels_first else (frame[0], frame[1])
    if min(height, width) < MIN_SIDE:
        raise ParityError(
            f"{path}: frames of {height}x{width} px are too small to judge (at least {MIN_SIDE}x{MIN_SIDE}; "
            f"shape {tuple(array.shape)})"
        )
    return channels_first


def _scale(path: Path, array: np.ndarray, value_range: tuple[float, float] | None, full_scale: int | None) -> Scale:
    """The value-range rule (module docstring); raise ParityError where it cannot hold."""
    if value_range is not None:
        return Scale(*value_range, as_is=False)
    dtype = array.dtype
    if dtype.kind == "b":
        return Scale(0.0, 1.0, as_is=True)
    if dtype == np.uint8:
        return Scale(0.0, 255.0, as_is=True)
    span = _span(array)
    if dtype.kind == "f":
        if span is not None and (span[0] < -RANGE_SLACK or span[1] > 1 + RANGE_SLACK):
            raise ParityError(
                f"{path}: values span [{span[0]:.6g}, {span[1]:.6g}], but floats are read as 0..1: pass "
                f"--range LOW,HIGH (e.g. {_suggest(span)}) to say which values are black and white"
            )
        return Scale(0.0, 1.0, as_is=True)
    top = full_scale or np.iinfo(dtype).max
    assert span is not None  # integers are always finite, and the array is not empty
    low, high = span
    name = "16-bit PNG" if full_scale else str(dtype)
    if low < 0:
        raise ParityError(
            f"{path}: values span [{low:.0f}, {high:.0f}], but {name} values are read as 0..{top}: pass "
            f"--range LOW,HIGH (e.g. {_suggest(span)})"
        )
    if top > 255 and low < high <= top / 255:
        raise ParityError(
            f"{path}: values span [{low:.0f}, {high:.0f}]: scaled by the {name} maximum {top} they would all be "
            f"black; pass --range LOW,HIGH (e.g. {_suggest(span)})"
        )
    return Scale(0.0, float(top), as_is=False)


def _suggest(span: tuple[float, float]) -> str:
    for low, high in ((0, 1), (-1, 1), (0, 255), (-128, 127), (0, 65535)):
        slack = RANGE_SLACK * (high - low)
        if low - slack <= span[0] and span[1] <= high + slack:
            return f"--range {low},{high}" if low >= 0 else f"--range={low},{high}"
    return f"--range {span[0]:g},{span[1]:g}" if span[0] >= 0 else f"--range={span[0]:g},{span[1]:g}"


def _blocks(array: np.ndarray) -> Iterator[np.ndarray]:
    """Views of `array` of about _SCAN_ITEMS values each, for reductions that never copy it whole."""
    if array.size <= _SCAN_ITEMS or array.ndim == 0:
        yield array
        return
    per_row = array.size // array.shape[0]
    if per_row > _SCAN_ITEMS:
        for row in array:
            yield from _blocks(row)
        return
    step = max(1, _SCAN_ITEMS // per_row)
    for start in range(0, array.shape[0], step):
        yield array[start : start + step]


def _span(array: np.ndarray) -> tuple[float, float] | None:
    """The smallest and largest finite value (None if there is none), read block by block."""
    low, high = math.inf, -math.inf
    for block in _blocks(array):
        if block.dtype.kind == "f":
            finite = np.isfinite(block)
            block = block if finite.all() else block[finite]
        if block.size:
            low, high = min(low, float(block.min())), max(high, float(block.max()))
    return (low, high) if low <= high else None


def _first_nonfinite(frame: np.ndarray, row_axis: int) -> tuple[int, ...] | None:
    """Index of the first NaN/Inf in `frame` (row by row along `row_axis`), or None."""
    rows = frame.shape[row_axis]
    step = max(1, _SCAN_ITEMS // max(1, frame.size // rows))
    for start in range(0, rows, step):
        window = [slice(None)] * frame.ndim
        window[row_axis] = slice(start, start + step)
        bad = ~np.isfinite(frame[tuple(window)])
        if bad.any():
            index = list(np.unravel_index(int(np.argmax(bad)), bad.shape))
            index[row_axis] += start
            return tuple(int(i) for i in index)
    return None
