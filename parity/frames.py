"""Decoded frames: relative image metrics against the reference and the noise verdict.

Frames arrive in the canonical layout (B x C x H x W, or B x C x T x H x W for video) in [0, 1];
only the first batch element is judged. For video, SSIM/PSNR are computed on a stated sample:
the first, middle and last frame and the frame with the largest mean difference.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from parity import noise, stages
from parity.compare import Check
from parity.noise import NOISE_SCORE
from parity.tolerance import FRAME_LIMITS, Tolerance


def frame_list(frames: torch.Tensor) -> list[np.ndarray]:
    """H x W x C float64 frames of the first batch element."""
    x = frames.detach().to("cpu", torch.float64)[0]
    if x.ndim == 3:  # C x H x W
        x = x.unsqueeze(1)
    return [x[:, t].permute(1, 2, 0).numpy() for t in range(x.shape[1])]


def to_uint8(frame: np.ndarray) -> np.ndarray:
    return (np.clip(np.nan_to_num(frame, nan=0.0), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def sample(mean_abs: list[float]) -> list[int]:
    n = len(mean_abs)
    picked = {0, n // 2, n - 1, int(np.argmax(mean_abs))}
    return sorted(picked)


def relative(reference: torch.Tensor, port: torch.Tensor) -> list[dict]:
    """Per sampled frame: SSIM and PSNR on 8-bit values, and their mean absolute difference."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ref_frames = [to_uint8(f) for f in frame_list(reference)]
    port_frames = [to_uint8(f) for f in frame_list(port)]
    if len(ref_frames) != len(port_frames) or ref_frames[0].shape != port_frames[0].shape:
        return []
    pairs = zip(ref_frames, port_frames, strict=True)
    mean_abs = [float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) for a, b in pairs]
    rows = []
    for t in sample(mean_abs):
        a, b = ref_frames[t], port_frames[t]
        same = np.array_equal(a, b)
        ssim = 1.0 if same else float(structural_similarity(a, b, channel_axis=-1, data_range=255))
        psnr = math.inf if same else float(peak_signal_noise_ratio(a, b, data_range=255))
        rows.append({"frame": t, "ssim": ssim, "psnr_db": psnr, "mean_abs_u8": mean_abs[t]})
    return rows


def noise_reports(frames: torch.Tensor) -> list[noise.NoiseReport]:
    return [noise.detect(f) for f in frame_list(frames)]


def save_png(frames: torch.Tensor, stem: str, out_dir) -> list[str]:
    """The first batch element's sampled frames as PNG files; returns their names."""
    from PIL import Image

    listed = frame_list(frames)
    names = []
    for t in sorted({0, len(listed) // 2, len(listed) - 1}):
        name = f"{stem}.png" if len(listed) == 1 else f"{stem}_frame{t}.png"
        # Fastest zlib level: the PNGs are for eyes, and a 1024 px frame at the default level costs 0.5 s.
        Image.fromarray(to_uint8(listed[t])).save(out_dir / name, compress_level=1)
        names.append(name)
    return names


def checks(reference: torch.Tensor, port: torch.Tensor, dtype: str, order: int) -> tuple[list[Check], dict]:
    """Two decoding checks, `frames_similarity` (SSIM, PSNR, mean abs difference within the dtype's
    limits) and `frames_noise` (the port's frames look like noise, NaN, constant, periodic or
    saturated while the reference's do not), and the report's `noise` section."""
    limits = FRAME_LIMITS[dtype]
    # The three analyses are independent and spend their time in numpy / scipy / scikit-image
    # kernels that release the GIL: at 1024 px, threads take a part of their ~0.6 s off each run.
    with ThreadPoolExecutor(max_workers=3) as pool:
        relative_rows = pool.submit(relative, reference, port)
        port_noise, reference_noise = pool.submit(noise_reports, port), pool.submit(noise_reports, reference)
        rows, port_reports, ref_reports = relative_rows.result(), port_noise.result(), reference_noise.result()
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
        status="ok" if similar else "mismatch",
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
        status=worst_port.reason if noisy else "ok",
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
