"""Decoded frames: relative image metrics against the reference and the noise verdict.

Frames arrive in the canonical layout (B x C x H x W, or B x C x T x H x W for video) in [0, 1];
only the first batch element is judged. For video, SSIM/PSNR are computed on a stated sample:
the first, middle and last frame and the frame with the largest mean difference.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from parity import noise, stages
from parity.compare import Check
from parity.files import write_atomic
from parity.noise import NOISE_SCORE
from parity.tolerance import FRAME_LIMITS, Tolerance
from parity.vocab import Status


def sample(mean_abs: list[float]) -> list[int]:
    n = len(mean_abs)
    picked = {0, n // 2, n - 1, int(np.argmax(mean_abs))}
    return sorted(picked)


def eight_bit(frames: torch.Tensor) -> torch.Tensor:
    """T x C x H x W float64 frames of the first batch element on their own device, as the 8-bit
    values of an 8-bit image of them (NaN -> 0, clipped to [0, 1], x255, rounded half to even)."""
    x = frames.detach()[0].to(torch.float64)
    if x.ndim == 3:  # C x H x W
        x = x.unsqueeze(1)
    return (torch.nan_to_num(x, nan=0.0).clamp(0.0, 1.0) * 255.0).round().transpose(0, 1)


# scikit-image's structural_similarity defaults: a 7x7 uniform window, sample covariance, K1 0.01, K2 0.03.
_WIN, _K1, _K2, _RANGE = 7, 0.01, 0.03, 255.0


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two C x H x W frames of 8-bit values, as skimage.metrics.structural_similarity(a, b,
    channel_axis=-1, data_range=255) computes it (its mean over the region where the window fits,
    averaged over channels), in torch on the frames' device (tests hold it to scikit-image's value)."""
    pool = torch.nn.functional.avg_pool2d
    x, y = a.unsqueeze(0), b.unsqueeze(0)
    ux, uy = pool(x, _WIN, stride=1), pool(y, _WIN, stride=1)
    cov_norm = _WIN * _WIN / (_WIN * _WIN - 1)
    vx = cov_norm * (pool(x * x, _WIN, stride=1) - ux * ux)
    vy = cov_norm * (pool(y * y, _WIN, stride=1) - uy * uy)
    vxy = cov_norm * (pool(x * y, _WIN, stride=1) - ux * uy)
    c1, c2 = (_K1 * _RANGE) ** 2, (_K2 * _RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def relative(reference: torch.Tensor, port: torch.Tensor) -> list[dict]:
    """Per sampled frame: SSIM and PSNR on 8-bit values, and their mean absolute difference.
    Computed where the frames are (a GPU run's frames stay on the GPU)."""
    ref, out = eight_bit(reference), eight_bit(port).to(reference.device)
    if ref.shape != out.shape:
        return []
    diff = out - ref
    mean_abs = diff.abs().mean(dim=(1, 2, 3)).tolist()
    mse = (diff * diff).mean(dim=(1, 2, 3)).tolist()
    rows = []
    for t in sample(mean_abs):
        same = mse[t] == 0.0
        ssim_t = 1.0 if same else ssim(ref[t], out[t])
        psnr = math.inf if same else 10.0 * math.log10(_RANGE**2 / mse[t])
        rows.append({"frame": t, "ssim": ssim_t, "psnr_db": psnr, "mean_abs_u8": mean_abs[t]})
    return rows


def noise_reports(frames: torch.Tensor) -> list[noise.NoiseReport]:
    """The noise detector on every frame of the first batch element, where the frames are."""
    x = frames.detach()[0]
    if x.ndim == 3:  # C x H x W
        x = x.unsqueeze(1)
    return [noise.detect(x[:, t]) for t in range(x.shape[1])]


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG file of H x W x C uint8 pixels (C = 1, 3 or 4), stored rather than deflated and with no
    row filters: the PNGs are for eyes, and a 1024 px frame takes about 4 ms this way against
    30-60 ms through Pillow at compress_level 0 (measured on this project's CPU machine)."""
    height, width, channels = pixels.shape
    colour_type = {1: 0, 3: 2, 4: 6}[channels]  # greyscale, RGB, RGBA
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # each row: filter type 0, then pixels
    rows[:, 1:] = pixels.reshape(height, width * channels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(data, zlib.crc32(kind))
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(rows.tobytes(), 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header), chunk(b"IDAT", idat), chunk(b"IEND", b"")])


def png_pixels(frames: torch.Tensor, stem: str) -> list[tuple[str, np.ndarray]]:
    """(file name, H x W x C uint8 pixels on the host) for the first batch element's sampled frames:
    `stem`.png for an image, `stem`_frame<t>.png for the first, middle and last frame of a video."""
    values = eight_bit(frames)  # on the frames' device: only the sampled frames come to the host
    count = values.shape[0]
    return [
        (
            f"{stem}.png" if count == 1 else f"{stem}_frame{t}.png",
            values[t].permute(1, 2, 0).to(torch.uint8).cpu().numpy(),
        )
        for t in sorted({0, count // 2, count - 1})
    ]


def write_pngs(pixels: list[tuple[str, np.ndarray]], out_dir: Path) -> list[str]:
    """Each (name, pixels) as a PNG file in out_dir, written atomically; returns the names. Encoding
    and writing release the GIL (zlib, file I/O): this can run beside the comparison in a thread."""
    for name, values in pixels:
        write_atomic(Path(out_dir) / name, png_bytes(values))
    return [name for name, _ in pixels]


def checks(reference: torch.Tensor, port: torch.Tensor, dtype: str, order: int) -> tuple[list[Check], dict]:
    """Two decoding checks, `frames_similarity` (SSIM, PSNR, mean abs difference within the dtype's
    limits) and `frames_noise` (the port's frames look like noise, NaN, constant, periodic or
    saturated while the reference's do not), and the report's `noise` section."""
    limits = FRAME_LIMITS[dtype]
    rows, port_reports, ref_reports = relative(reference, port), noise_reports(port), noise_reports(reference)
    worst = {
        "ssim": min((r["ssim"] for r in rows), default=math.nan),
        "psnr_db": min((r["psnr_db"] for r in rows), default=math.nan),
        "mean_abs_u8": max((r["mean_abs_u8"] for r in rows), default=math.nan),
    }
    similar = bool(rows) and (
        worst["ssim"] >= limits["ssim"]
        and worst["psnr_db"] >= limits["psnr_db"]
        and worst["mean_abs_u8"] <= limits["mean_abs_u8"]
    )
    rule = f"SSIM>={limits['ssim']:g} PSNR>={limits['psnr_db']:g}dB mean_abs_u8<={limits['mean_abs_u8']:g}"
    observed = f"SSIM {worst['ssim']:.5f}, PSNR {worst['psnr_db']:.1f} dB, mean abs {worst['mean_abs_u8']:.3g}/255"
    similarity = Check(
        stage=stages.DECODING,
        tensor="frames_similarity",
        step=None,
        block=None,
        passed=similar,
        status=Status.OK if similar else Status.MISMATCH,
        tolerance=Tolerance(source=f"frame limits {dtype}", text=rule),
        metrics=None,
        message="" if similar else f"{observed} (limits: {rule})",
        order=order,
    )
    worst_port = max(port_reports, key=lambda r: (r.flagged, r.score))
    worst_ref = max(ref_reports, key=lambda r: (r.flagged, r.score))
    noisy = worst_port.flagged and not worst_ref.flagged
    if noisy:
        message = (
            f"the port's frames look like {worst_port.reason} (score {worst_port.score:.2f}, neighbour "
            f"correlation {worst_port.neighbour_correlation:.2f}) while the reference's do not "
            f"(score {worst_ref.score:.2f})"
        )
    elif worst_port.flagged:
        message = f"the reference's frames are flagged too ({worst_ref.reason}): judged by the relative metrics only"
    else:
        message = ""
    noise_check = Check(
        stage=stages.DECODING,
        tensor="frames_noise",
        step=None,
        block=None,
        passed=not noisy,
        status=Status(worst_port.reason) if noisy else Status.OK,
        tolerance=Tolerance(
            source="noise detector", text=f"noise score <= {NOISE_SCORE:g}, not NaN/constant/periodic/saturated"
        ),
        metrics=None,
        message=message,
        order=order + 1,
    )
    section = {
        "verdict": worst_port.reason if noisy else "ok",
        "port": [r.as_dict() for r in port_reports],
        "reference": [r.as_dict() for r in ref_reports],
        "relative": rows,
        "limits": limits,
        "note": message,
    }
    return [similarity, noise_check], section
