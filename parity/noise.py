"""Does an image (or a video frame) look like noise? Detectors that need no reference.

Every detector reads a grayscale float image in [0, 1]. The decisive two are complementary:
natural images are spatially correlated (neighbouring pixels alike) and keep most spectral energy
at low frequencies; noise has near-zero neighbour correlation and a flat spectrum. The score is
the larger of the two signals, so adding more noise never lowers it. Broken outputs that are not
noise get their own reasons: NaN/Inf, constant, periodic (a pixel-scale checkerboard from a wrong
patchify), saturated (most pixels clipped, e.g. a large black-and-white checkerboard).
Thresholds are calibrated on scikit-image's photographs (`python -m parity.calibrate`).

Computed in float64 by the image's own library, with one code path for both: a torch tensor (a
run's decoded frames) where it is, so a GPU run's 1024 px frames are judged on the GPU and only
the handful of scalars below come to the host, in one transfer; a numpy array (`parity noise`) in
numpy, so judging a file never imports torch (importing it alone takes ~0.9 GB of memory).
numpy and torch agree on this arithmetic to ~1e-12 (tests/test_noise_detectors.py).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

if TYPE_CHECKING:
    import torch

# Flagged above this. Calibrated (python -m parity.calibrate): highest benign score 0.629 (gravel
# texture resized to 64 px), lowest score of anything that must be flagged as noise 0.740.
NOISE_SCORE = 0.68
CONSTANT_STD = 0.01  # a standard deviation below 1 % of the range: one flat value
SATURATED_SHARE = 0.6  # more than 60 % of pixels at the ends of the range
PERIODIC_CORRELATION = 0.9  # |correlation| at a lag of 1..4 px, with neighbours unalike: a periodic pattern
PERIODIC_LAGS = (1, 2, 3, 4)
WHITE_NOISE_HF_SHARE = 1 - math.pi / 16  # share of a flat spectrum above half the Nyquist radius


# An image as either library holds it. The arithmetic below is written once, in the calls the two
# share (x.mean(axis=..., keepdims=...), xp.where, xp.fft.fft2, ...); the three that differ are
# the helpers under _xp.
Array = Any


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


def _is_torch(x: object) -> TypeGuard[torch.Tensor]:
    """A torch tensor? Asked without importing torch: if it is not imported, `x` cannot be one."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _xp(x: Array) -> ModuleType:
    """The library that holds `x`: torch for a tensor, numpy otherwise."""
    return sys.modules["torch"] if _is_torch(x) else np


def _fftfreq(x: Array, n: int) -> Array:
    if _is_torch(x):
        return _xp(x).fft.fftfreq(n, dtype=x.dtype, device=x.device)
    return np.fft.fftfreq(n)


def _to_host(values: list[Array]) -> list[float]:
    """Scalars as Python floats; a tensor's in one device transfer."""
    if values and _is_torch(values[0]):
        torch = _xp(values[0])
        return torch.stack([v.to(torch.float64) for v in values]).tolist()
    return [float(v) for v in values]


def to_channels(image: np.ndarray | torch.Tensor) -> Array:
    """H x W, H x W x C or C x H x W (C <= 4), uint8/bool/float in [0, 1] -> float64 C x H x W, in
    the image's library and on its device (at most 3 channels: alpha is dropped)."""
    shape = tuple(image.shape)
    x: Array
    if _is_torch(image):
        torch = _xp(image)
        x = image.detach()
        x = (x.to(torch.float64) / 255.0) if x.dtype == torch.uint8 else x.to(torch.float64)
    else:
        x = np.asarray(image)
        x = x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64, copy=False)
    if x.ndim == 2:
        return x[None]
    if x.ndim == 3 and x.shape[-1] <= 4 < x.shape[0]:  # channels last
        x = _xp(x).moveaxis(x, -1, 0)
    if x.ndim != 3 or x.shape[0] > 4:
        raise ValueError(f"expected an image (H x W, H x W x C or C x H x W), got shape {shape}")
    return x[:3]


def _centred(x: Array) -> Array:
    return x - x.mean(axis=(-2, -1), keepdims=True)


def lag_correlation(x: Array, lag: int = 1) -> Array:
    """Mean of the horizontal and vertical correlation coefficients at `lag` pixels, per leading
    index of a ... x H x W array (1 where the image is flat)."""
    xp = _xp(x)
    x = _centred(x)
    var = (x * x).mean(axis=(-2, -1))
    horizontal = (x[..., :, lag:] * x[..., :, :-lag]).mean(axis=(-2, -1))
    vertical = (x[..., lag:, :] * x[..., :-lag, :]).mean(axis=(-2, -1))
    flat = var == 0.0
    return xp.where(flat, 1.0, (horizontal + vertical) / 2 / xp.where(flat, 1.0, var))


def high_frequency_share(x: Array) -> Array:
    """Share of spectral power (mean removed) beyond half the Nyquist radius, per leading index."""
    xp = _xp(x)
    power = abs(xp.fft.fft2(_centred(x))) ** 2
    fy = _fftfreq(x, x.shape[-2])[:, None]
    fx = _fftfreq(x, x.shape[-1])[None, :]
    high = xp.sqrt(fx**2 + fy**2) > 0.25
    total = power.sum(axis=(-2, -1))
    share = (power * high).sum(axis=(-2, -1)) / xp.where(total > 0, total, 1.0)
    return xp.where(total > 0, share, 0.0)


def _evidence(image: np.ndarray | torch.Tensor) -> list[float]:
    """Every number the verdict reads, as one list from one device transfer: nonfinite count, max
    channel std, saturated share, mean neighbour correlation and high-frequency share over the
    channels, and the grayscale image's correlation at each periodic lag (0 where the image is
    too small for the lag)."""
    channels = to_channels(image)
    xp = _xp(channels)
    nonfinite = (~xp.isfinite(channels)).sum()
    channels = xp.nan_to_num(channels, nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    gray = channels.mean(axis=0)
    centred = _centred(channels)
    std = xp.sqrt((centred * centred).mean(axis=(1, 2)).max())
    saturated = ((channels <= 1 / 255) | (channels >= 254 / 255)).sum()  # a count: shares are taken on the host
    correlation = lag_correlation(channels, 1).mean()
    hf_share = high_frequency_share(channels).mean()
    lags = [lag for lag in PERIODIC_LAGS if min(gray.shape) > 2 * lag]
    values = _to_host([nonfinite, std, saturated, correlation, hf_share, *(lag_correlation(gray, lag) for lag in lags)])
    values[2] /= math.prod(channels.shape)
    return values + [0.0] * (len(PERIODIC_LAGS) - len(lags))


def detect(image: np.ndarray | torch.Tensor) -> NoiseReport:
    """Judge one image. Correlation and spectrum are measured per colour channel and averaged:
    noise in each channel would partly cancel in a grayscale average."""
    nonfinite, std, saturated, correlation, hf_share, *lag_correlations = _evidence(image)
    score = max(min(max(1.0 - correlation, 0.0), 1.0), min(hf_share / WHITE_NOISE_HF_SHARE, 1.0))
    # Periodic: a lag of 1..4 px at which the image (nearly) repeats or inverts while neighbouring
    # pixels are unalike, the signature of a checkerboard from a wrong patchify / unpack. Neighbours
    # alike (> 0.5): a natural image, or a pattern too coarse to be an artifact.
    periodic = correlation <= 0.5 and any(abs(c) >= PERIODIC_CORRELATION for c in lag_correlations)
    if nonfinite:
        reason = "nonfinite"
    elif std < CONSTANT_STD:
        reason, score = "constant", 0.0
    elif periodic:
        reason = "periodic"
    elif saturated > SATURATED_SHARE:
        reason = "saturated"
    elif score > NOISE_SCORE:
        reason = "noise"
    else:
        reason = "ok"
    return NoiseReport(reason != "ok", score, reason, correlation, hf_share, std, saturated, int(nonfinite))
