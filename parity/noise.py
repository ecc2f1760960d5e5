"""Does an image (or a video frame) look like noise? Detectors that need no reference.

Every detector reads a grayscale float image in [0, 1]. The decisive two are complementary:
natural images are spatially correlated (neighbouring pixels alike) and keep most spectral energy
at low frequencies; noise has near-zero neighbour correlation and a flat spectrum. The score is
the larger of the two signals, so adding more noise never lowers it. Broken outputs that are not
noise get their own reasons: NaN/Inf, constant, periodic (a pixel-scale checkerboard from a wrong
patchify), saturated (most pixels clipped, e.g. a large black-and-white checkerboard).
Thresholds are calibrated on scikit-image's photographs (`python -m parity.calibrate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Flagged above this. Calibrated (python -m parity.calibrate): highest benign score 0.629 (gravel
# texture resized to 64 px), lowest score of anything that must be flagged as noise 0.740.
NOISE_SCORE = 0.68
CONSTANT_STD = 0.01  # a standard deviation below 1 % of the range: one flat value
SATURATED_SHARE = 0.6  # more than 60 % of pixels at the ends of the range
PERIODIC_CORRELATION = 0.9  # |correlation| at a lag of 1..4 px, with neighbours unalike: a periodic pattern
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


def to_channels(image: np.ndarray) -> np.ndarray:
    """H x W, H x W x C or C x H x W (C <= 4), uint8/bool/float in [0, 1] -> float64 C x H x W
    (at most 3 channels: alpha is dropped)."""
    x = np.asarray(image)
    if x.dtype == np.uint8:
        x = x / 255.0
    elif x.dtype == bool:
        x = x.astype(np.float64)
    x = x.astype(np.float64)
    if x.ndim == 2:
        return x[None]
    if x.ndim == 3 and x.shape[-1] <= 4 < x.shape[0]:  # channels last
        x = np.moveaxis(x, -1, 0)
    if x.ndim != 3 or x.shape[0] > 4:
        raise ValueError(f"expected an image (H x W, H x W x C or C x H x W), got shape {np.asarray(image).shape}")
    return x[:3]


def lag_correlation(gray: np.ndarray, lag: int = 1) -> float:
    """Mean of the horizontal and vertical correlation coefficients at `lag` pixels."""
    x = gray - gray.mean()
    var = float((x * x).mean())
    if var == 0.0:
        return 1.0
    horizontal = float((x[:, lag:] * x[:, :-lag]).mean()) / var
    vertical = float((x[lag:, :] * x[:-lag, :]).mean()) / var
    return (horizontal + vertical) / 2


def neighbour_correlation(gray: np.ndarray) -> float:
    return lag_correlation(gray, 1)


def periodic_lag(gray: np.ndarray, neighbours: float) -> int | None:
    """A lag of 1..4 px at which the image (nearly) repeats or inverts while neighbouring pixels are
    unalike: the signature of a checkerboard from a wrong patchify / unpack."""
    if neighbours > 0.5:
        return None  # neighbours alike: a natural image, or a pattern too coarse to be an artifact
    for lag in range(1, 5):
        if min(gray.shape) > 2 * lag and abs(lag_correlation(gray, lag)) >= PERIODIC_CORRELATION:
            return lag
    return None


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
    """Judge one image. Correlation and spectrum are measured per colour channel and averaged:
    noise in each channel would partly cancel in a grayscale average."""
    channels = to_channels(image)
    nonfinite = int((~np.isfinite(channels)).sum())
    channels = np.clip(np.nan_to_num(channels, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    gray = channels.mean(axis=0)
    std = float(channels.std(axis=(1, 2)).max())
    saturated = float(((channels <= 1 / 255) | (channels >= 254 / 255)).mean())
    correlation = float(np.mean([neighbour_correlation(c) for c in channels]))
    hf_share = float(np.mean([high_frequency_share(c) for c in channels]))
    score = max(min(max(1.0 - correlation, 0.0), 1.0), min(hf_share / WHITE_NOISE_HF_SHARE, 1.0))
    if nonfinite:
        reason = "nonfinite"
    elif std < CONSTANT_STD:
        reason, score = "constant", 0.0
    elif periodic_lag(gray, correlation) is not None:
        reason = "periodic"
    elif saturated > SATURATED_SHARE:
        reason = "saturated"
    elif score > NOISE_SCORE:
        reason = "noise"
    else:
        reason = "ok"
    return NoiseReport(reason != "ok", score, reason, correlation, hf_share, std, saturated, nonfinite)
