"""Does an image (or a video frame) look like noise? Detectors that need no reference.

Every detector reads a grayscale float image in [0, 1]. The decisive two are complementary:
natural images are spatially correlated (neighbouring pixels alike) and keep most spectral energy
at low frequencies; noise has near-zero neighbour correlation and a flat spectrum. The score is
the larger of the two signals, so adding more noise never lowers it. Broken outputs that are not
noise get their own reasons: NaN/Inf, constant, saturated, periodic (e.g. a checkerboard).
Thresholds are calibrated on scikit-image's photographs (`python -m parity.calibrate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

NOISE_SCORE = 0.6  # flagged above this (calibration: README "Noise detection")
CONSTANT_STD = 0.01  # a standard deviation below 1 % of the range: one flat value
SATURATED_SHARE = 0.6  # more than 60 % of pixels at the ends of the range
PERIODIC_CORRELATION = -0.3  # neighbours anti-correlated: a pixel-period pattern
WHITE_NOISE_HF_SHARE = 1 - np.pi / 16  # share of a flat spectrum above half the Nyquist radius


@dataclass(frozen=True)
class NoiseReport:
    flagged: bool
    score: float  # 0 = natural image, 1 = noise
    reason: str  # "ok", "noise", "periodic", "constant", "saturated", "nonfinite"
    neighbour_correlation: float
    high_frequency_share: float
    std: float
    saturated_share: float
    nonfinite: int

    def as_dict(self) -> dict:
        return asdict(self)


def to_gray(image: np.ndarray) -> np.ndarray:
    """H x W, H x W x C or C x H x W (C <= 4), uint8 or float in [0, 1] -> float64 H x W."""
    x = np.asarray(image)
    if x.dtype == np.uint8:
        x = x / 255.0
    elif x.dtype == bool:
        x = x.astype(np.float64)
    x = x.astype(np.float64)
    if x.ndim == 3 and x.shape[0] <= 4 and x.shape[-1] > 4:  # channels first
        x = np.moveaxis(x, 0, -1)
    if x.ndim == 3:
        x = x[..., :3].mean(axis=-1)
    if x.ndim != 2:
        raise ValueError(f"expected an image (H x W[ x C]), got shape {np.asarray(image).shape}")
    return x


def neighbour_correlation(gray: np.ndarray) -> float:
    """Mean of the horizontal and vertical lag-1 correlation coefficients."""
    x = gray - gray.mean()
    var = float((x * x).mean())
    if var == 0.0:
        return 1.0
    horizontal = float((x[:, 1:] * x[:, :-1]).mean()) / var
    vertical = float((x[1:, :] * x[:-1, :]).mean()) / var
    return (horizontal + vertical) / 2


def high_frequency_share(gray: np.ndarray) -> float:
    """Share of spectral power (mean removed) beyond half the Nyquist radius."""
    x = gray - gray.mean()
    power = np.abs(np.fft.fft2(x)) ** 2
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.fftfreq(x.shape[1])[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    total = float(power.sum())
    return float(power[radius > 0.25].sum()) / total if total > 0 else 0.0


def detect(image: np.ndarray) -> NoiseReport:
    raw = np.asarray(image, dtype=np.float64) if np.asarray(image).dtype != np.uint8 else np.asarray(image)
    nonfinite = int((~np.isfinite(raw)).sum()) if raw.dtype != np.uint8 else 0
    gray = to_gray(np.nan_to_num(raw, nan=0.0, posinf=1.0, neginf=0.0) if nonfinite else image)
    gray = np.clip(gray, 0.0, 1.0)
    std = float(gray.std())
    saturated = float(((gray <= 1 / 255) | (gray >= 254 / 255)).mean())
    correlation = neighbour_correlation(gray)
    hf_share = high_frequency_share(gray)
    score = max(min(max(1.0 - correlation, 0.0), 1.0), min(hf_share / WHITE_NOISE_HF_SHARE, 1.0))
    if nonfinite:
        reason = "nonfinite"
    elif std < CONSTANT_STD:
        reason, score = "constant", 0.0
    elif correlation < PERIODIC_CORRELATION:
        reason = "periodic"
    elif saturated > SATURATED_SHARE:
        reason = "saturated"
    elif score > NOISE_SCORE:
        reason = "noise"
    else:
        reason = "ok"
    return NoiseReport(reason != "ok", score, reason, correlation, hf_share, std, saturated, nonfinite)
