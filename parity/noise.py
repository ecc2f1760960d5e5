"""Does an image (or a video frame) look like noise? Detectors that need no reference.

Every detector reads a grayscale float image in [0, 1]. The decisive two are complementary:
natural images are spatially correlated (neighbouring pixels alike) and keep most spectral energy
at low frequencies; noise has near-zero neighbour correlation and a flat spectrum. The score is
the larger of the two signals, so adding more noise never lowers it. Broken outputs that are not
noise get their own reasons: NaN/Inf, constant, periodic (a pixel-scale checkerboard from a wrong
patchify), saturated (most pixels clipped, e.g. a large black-and-white checkerboard).
Thresholds are calibrated on scikit-image's photographs (`python -m parity.calibrate`).

Computed in torch, in float64, where the image is: a GPU run's 1024 px frames are judged on the
GPU and only the handful of scalars below come to the host, in one transfer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

# Flagged above this. Calibrated (python -m parity.calibrate): highest benign score 0.629 (gravel
# texture resized to 64 px), lowest score of anything that must be flagged as noise 0.740.
NOISE_SCORE = 0.68
CONSTANT_STD = 0.01  # a standard deviation below 1 % of the range: one flat value
SATURATED_SHARE = 0.6  # more than 60 % of pixels at the ends of the range
PERIODIC_CORRELATION = 0.9  # |correlation| at a lag of 1..4 px, with neighbours unalike: a periodic pattern
PERIODIC_LAGS = (1, 2, 3, 4)
WHITE_NOISE_HF_SHARE = 1 - math.pi / 16  # share of a flat spectrum above half the Nyquist radius


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


def to_channels(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """H x W, H x W x C or C x H x W (C <= 4), uint8/bool/float in [0, 1] -> float64 C x H x W on
    the image's device (at most 3 channels: alpha is dropped)."""
    x = image.detach() if isinstance(image, torch.Tensor) else torch.from_numpy(np.asarray(image))
    shape = tuple(x.shape)
    if x.dtype == torch.uint8:
        x = x.to(torch.float64) / 255.0
    x = x.to(torch.float64)
    if x.ndim == 2:
        return x[None]
    if x.ndim == 3 and x.shape[-1] <= 4 < x.shape[0]:  # channels last
        x = x.movedim(-1, 0)
    if x.ndim != 3 or x.shape[0] > 4:
        raise ValueError(f"expected an image (H x W, H x W x C or C x H x W), got shape {shape}")
    return x[:3]


def lag_correlation(x: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """Mean of the horizontal and vertical correlation coefficients at `lag` pixels, per leading
    index of a ... x H x W tensor (1 where the image is flat)."""
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    var = (x * x).mean(dim=(-2, -1))
    horizontal = (x[..., :, lag:] * x[..., :, :-lag]).mean(dim=(-2, -1))
    vertical = (x[..., lag:, :] * x[..., :-lag, :]).mean(dim=(-2, -1))
    flat = var == 0.0
    return torch.where(flat, 1.0, (horizontal + vertical) / 2 / torch.where(flat, 1.0, var))


def high_frequency_share(x: torch.Tensor) -> torch.Tensor:
    """Share of spectral power (mean removed) beyond half the Nyquist radius, per leading index."""
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs() ** 2
    fy = torch.fft.fftfreq(x.shape[-2], dtype=x.dtype, device=x.device)[:, None]
    fx = torch.fft.fftfreq(x.shape[-1], dtype=x.dtype, device=x.device)[None, :]
    high = torch.sqrt(fx**2 + fy**2) > 0.25
    total = power.sum(dim=(-2, -1))
    share = (power * high).sum(dim=(-2, -1)) / torch.where(total > 0, total, 1.0)
    return torch.where(total > 0, share, 0.0)


def _evidence(image: np.ndarray | torch.Tensor) -> list[float]:
    """Every number the verdict reads, as one list from one device transfer: nonfinite count, max
    channel std, saturated share, mean neighbour correlation and high-frequency share over the
    channels, and the grayscale image's correlation at each periodic lag."""
    channels = to_channels(image)
    nonfinite = (~torch.isfinite(channels)).sum().to(torch.float64)
    channels = torch.nan_to_num(channels, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
    gray = channels.mean(dim=0)
    std = channels.std(dim=(1, 2), correction=0).max()
    saturated = ((channels <= 1 / 255) | (channels >= 254 / 255)).to(torch.float64).mean()
    correlation = lag_correlation(channels, 1).mean()
    hf_share = high_frequency_share(channels).mean()
    height, width = gray.shape
    lags = [lag_correlation(gray, lag) if min(height, width) > 2 * lag else gray.new_zeros(()) for lag in PERIODIC_LAGS]
    return torch.stack([nonfinite, std, saturated, correlation, hf_share, *lags]).tolist()


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
