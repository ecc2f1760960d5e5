"""Calibrate the noise detector on real photographs and on what must be flagged.

`python -m parity.calibrate [--out reports]` writes noise-calibration.csv and .md: per image and
variant, the detector's score, its evidence, the verdict and whether that verdict is the expected
one. Benign inputs (scikit-image's photographs, blurred, JPEG-compressed, resized down to 64 px)
must not be flagged; noise (Gaussian, uniform, salt-and-pepper, photographs under heavy additive
noise) must be flagged as noise, and checkerboards / constant / NaN images with their own reason.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from parity.files import write_atomic
from parity.noise import detect

# scikit-image's photographs that ship with the package (no download needed)
PHOTOS = (
    "astronaut",
    "camera",
    "cat",
    "coffee",
    "coins",
    "moon",
    "page",
    "text",
    "rocket",
    "clock",
    "hubble_deep_field",
    "immunohistochemistry",
    "microaneurysms",
    "retina",
    "brick",
    "grass",
    "gravel",
    "cell",
    "stereo_motorcycle",
)
HEAVY_NOISE_STD = 0.5  # additive Gaussian noise on [0, 1] images: "heavy"


def photo(name: str) -> np.ndarray:
    import skimage.data
    from skimage import transform, util

    image = getattr(skimage.data, name)()
    image = image[0] if isinstance(image, tuple) else image
    image = util.img_as_float(image)
    image = image[..., :3] if image.ndim == 3 else image
    longest = max(image.shape[:2])
    if longest > 512:  # keep the calibration fast; detail at this scale is still a photograph's
        scale = 512 / longest
        shape = (round(image.shape[0] * scale), round(image.shape[1] * scale))
        image = transform.resize(image, shape, anti_aliasing=True)
    return image


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue()))) / 255.0


def benign_variants(image: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    from skimage import filters, transform

    channel_axis = -1 if image.ndim == 3 else None
    yield "original", image
    yield "gaussian blur sigma 2", filters.gaussian(image, sigma=2, channel_axis=channel_axis)
    yield "jpeg quality 20", jpeg(image, 20)
    for size in (128, 64):
        yield f"resized to {size} px", transform.resize(image, (size, size) + image.shape[2:], anti_aliasing=True)


def flagged_inputs(rng: np.random.Generator) -> Iterator[tuple[str, str, np.ndarray, str]]:
    """(image, variant, pixels, expected reason)."""
    from skimage import util

    for size in (64, 256):
        yield "gaussian noise", f"{size} px", np.clip(rng.normal(0.5, 0.2, (size, size, 3)), 0, 1), "noise"
        yield "uniform noise", f"{size} px", rng.uniform(0, 1, (size, size, 3)), "noise"
        gray = np.full((size, size), 0.5)
        yield "salt and pepper", f"{size} px, 30 %", util.random_noise(gray, mode="s&p", amount=0.3, rng=rng), "noise"
    for name in PHOTOS:
        noisy = np.clip(photo(name) + rng.normal(0, HEAVY_NOISE_STD, photo(name).shape), 0, 1)
        yield name, f"heavy additive noise (std {HEAVY_NOISE_STD})", noisy, "noise"
    grid = np.indices((128, 128))
    yield "checkerboard", "1 px squares", (grid.sum(0) % 2).astype(float), "periodic"
    yield "checkerboard", "2 px squares", ((grid // 2).sum(0) % 2).astype(float), "periodic"
    import skimage.data

    yield "checkerboard", "skimage.data (25 px squares)", util.img_as_float(skimage.data.checkerboard()), "saturated"
    yield "constant", "gray 0.3", np.full((128, 128, 3), 0.3), "constant"
    nan = np.full((64, 64, 3), 0.5)
    nan[10:20, 10:20] = np.nan
    yield "nan", "NaN patch", nan, "nonfinite"


def table(seed: int = 0) -> pd.DataFrame:
    rows = []

    def add(image: str, variant: str, pixels: np.ndarray, expected: str) -> None:
        r = detect(pixels)
        rows.append(
            {
                "image": image,
                "variant": variant,
                "expected": expected,
                "verdict": r.reason,
                "correct": r.reason == expected,
                "score": round(r.score, 4),
                "neighbour_correlation": round(r.neighbour_correlation, 4),
                "high_frequency_share": round(r.high_frequency_share, 4),
                "std": round(r.std, 4),
                "saturated_share": round(r.saturated_share, 4),
            }
        )

    for name in PHOTOS:
        for variant, pixels in benign_variants(photo(name)):
            add(name, variant, pixels, "ok")
    for image, variant, pixels, expected in flagged_inputs(np.random.default_rng(seed)):
        add(image, variant, pixels, expected)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity.calibrate")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    df = table()
    benign = df[df.expected == "ok"]
    flagged = df[df.expected != "ok"]
    summary = (
        f"false flags on benign inputs: {int((~benign.correct).sum())} of {len(benign)} "
        f"(highest benign score {benign.score.max():.3f}); "
        f"wrong verdicts on inputs that must be flagged: {int((~flagged.correct).sum())} of {len(flagged)} "
        f"(lowest noise score {flagged[flagged.expected == 'noise'].score.min():.3f})"
    )
    write_atomic(args.out / "noise-calibration.csv", df.to_csv(index=False))
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    write_atomic(
        args.out / "noise-calibration.md", f"# Noise detector calibration\n\n{summary}\n\n" + "\n".join(lines) + "\n"
    )
    print(summary)
    print(f"table: {args.out / 'noise-calibration.md'}")
    return 0 if df.correct.all() else 1


if __name__ == "__main__":
    sys.exit(main())
