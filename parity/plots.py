"""report.html's pictures: the error along the DiT's blocks and along the denoising steps (matplotlib
figures as PNG bytes), and the amplified per-pixel difference of two decoded frames.

matplotlib (Agg, no display) is imported inside the functions that draw, so importing this module,
parity.report or `parity` costs nothing; the series are plain data, built and tested apart.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# How a stream's line is drawn; Diffusers' names: hidden_states carry the image (latent) tokens,
# encoder_hidden_states the text tokens of a dual-stream block (Flux, SD3, Qwen-Image).
STREAMS = {
    "hidden_states": ("-", "hidden_states (image)"),
    "encoder_hidden_states": ("--", "encoder_hidden_states (text)"),
}
_OTHER_STYLES = (":", "-.")
STEP_TENSORS = ("noise_pred", "latents")  # the guided prediction and the scheduler's output, per step
_PALETTE = [f"C{i}" for i in range(10) if i != 3]  # matplotlib's cycle without C3, red: a failing check's cross
COLORMAP = "inferno"  # the difference heatmap: black (equal) to yellow, readable in print and by most eyes


@dataclass
class Series:
    """One line of a plot: x positions, rel L2 values (finite only) and which of those checks failed."""

    label: str
    x: list[int] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    failed: list[bool] = field(default_factory=list)
    step: int | None = None
    tensor: str = ""
    limit: float = math.nan  # the checks' rel L2 limit, when they share one


def _finite(value: Any) -> bool:
    return value is not None and value is not pd.NA and math.isfinite(float(value))


def _limit(rows: pd.DataFrame) -> float:
    limits = {float(v) for v in rows["max_rel_l2"] if _finite(v)}
    return limits.pop() if len(limits) == 1 else math.nan


def block_series(frame: pd.DataFrame) -> tuple[list[str], list[Series]]:
    """The captured blocks in execution order, and one series per (step, tensor): the rel L2 of each
    block's output along the blocks. Checks whose rel L2 is not finite (NaN: a shape mismatch) are left out."""
    rows = frame[frame["block"].notna() & frame["step"].notna()]
    blocks = [str(b) for b in pd.unique(rows["block"])]
    position = {name: i for i, name in enumerate(blocks)}
    series = []
    for (step, tensor), group in rows.groupby(["step", "tensor"], sort=True):
        line = Series(f"step {step} · {tensor}", step=int(step), tensor=str(tensor), limit=_limit(group))
        for record in group.to_dict("records"):
            if _finite(record["rel_l2"]):
                line.x.append(position[str(record["block"])])
                line.y.append(float(record["rel_l2"]))
                line.failed.append(not record["passed"])
        if line.x:
            series.append(line)
    return blocks, series


def step_series(frame: pd.DataFrame) -> list[Series]:
    """noise_pred (and its CFG branches, where recorded) and latents per denoising step: the DiT
    output and the scheduler step's output, the tensors an error travels through from step to step."""
    rows = frame[frame["block"].isna() & frame["step"].notna() & (frame["stage"] == "denoising")]
    names = [str(t) for t in pd.unique(rows["tensor"]) if str(t) in STEP_TENSORS or str(t).startswith("noise_pred_")]
    names.sort(key=lambda t: (t not in STEP_TENSORS, STEP_TENSORS.index(t) if t in STEP_TENSORS else 0, t))
    series = []
    for tensor in names:
        group = rows[rows["tensor"] == tensor]
        line = Series(tensor, tensor=tensor, limit=_limit(group))
        for record in group.to_dict("records"):
            if _finite(record["rel_l2"]):
                line.x.append(int(record["step"]))
                line.y.append(float(record["rel_l2"]))
                line.failed.append(not record["passed"])
        if line.x:
            series.append(line)
    return series


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; set before pyplot is imported
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")  # tight: rotated labels and legend inside
    _pyplot().close(fig)
    return buffer.getvalue()


def _rel_l2_axis(ax: Any, series: list[Series]) -> None:
    """Symmetric-log y: decades above the smallest non-zero error, and exact zeros (bit-identical
    outputs, common in fp32) drawn at 0 rather than dropped as a log axis would."""
    values = [v for line in series for v in line.y] + [line.limit for line in series if _finite(line.limit)]
    positive = [v for v in values if v > 0]
    ax.set_ylabel("rel L2, port vs reference")
    ax.grid(True, which="major", alpha=0.3)
    if not positive:
        ax.set_ylim(-0.05, 1.0)
        ax.text(0.5, 0.5, "every value is 0: bit-identical", transform=ax.transAxes, ha="center", color="#555")
        return
    floor = 10 ** math.floor(math.log10(min(positive)))
    ax.set_yscale("symlog", linthresh=floor, linscale=0.7)
    ax.set_ylim(0, max(positive) * 3)


def _legend(ax: Any, handles: list[Any]) -> None:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)


def _limit_lines(ax: Any, series: list[Series]) -> list[Any]:
    """Each rel L2 limit the lines' checks have, dotted grey; named by its tensors where they differ."""
    from matplotlib.lines import Line2D

    limits: dict[float, list[str]] = {}
    for line in series:
        if _finite(line.limit):
            limits.setdefault(line.limit, []).append(line.tensor)
    for value, tensors in limits.items():
        ax.axhline(value, color="grey", ls=":", lw=1.2)
        if len(limits) > 1:
            where = ("axes fraction", "data")
            text = ", ".join(dict.fromkeys(tensors))
            ax.annotate(text, (0.99, value), xycoords=where, ha="right", va="bottom", fontsize=8, color="grey")
    return [Line2D([], [], color="grey", ls=":", label="rel L2 limit")] if limits else []


def _failures(ax: Any, series: list[Series]) -> list[Any]:
    from matplotlib.lines import Line2D

    xs = [x for line in series for x, bad in zip(line.x, line.failed, strict=True) if bad]
    ys = [y for line in series for y, bad in zip(line.y, line.failed, strict=True) if bad]
    if not xs:
        return []
    ax.scatter(xs, ys, marker="x", s=70, color="#d62728", zorder=5, linewidths=2)
    return [Line2D([], [], color="#d62728", marker="x", ls="", markersize=8, mew=2, label="failing check")]


def blocks_png(frame: pd.DataFrame) -> bytes | None:
    """rel L2 of every captured block output along the blocks: one line per captured step (colour)
    and stream (line style), failing checks crossed in red. None when no block was captured."""
    blocks, series = block_series(frame)
    if not series:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D

    steps = sorted({line.step for line in series if line.step is not None})
    if len(steps) <= len(_PALETTE):
        colour: dict[int | None, Any] = dict(zip(steps, _PALETTE, strict=False))
    else:  # many captured steps (--block-steps all): a gradient from the first to the last
        cmap = plt.get_cmap("viridis")
        colour = {s: cmap(i / (len(steps) - 1)) for i, s in enumerate(steps)}
    tensors = list(dict.fromkeys(line.tensor for line in series))
    others = iter(_OTHER_STYLES * len(tensors))
    style = {t: STREAMS[t][0] if t in STREAMS else next(others) for t in tensors}
    width = max(9.0, min(20.0, 3.0 + 0.3 * len(blocks)))
    fig, ax = plt.subplots(figsize=(width, 4.2))
    for line in series:
        ax.plot(line.x, line.y, ls=style[line.tensor], marker="o", ms=4, lw=1.6, color=colour[line.step])
    _rel_l2_axis(ax, series)
    handles = _failures(ax, series) + _limit_lines(ax, series)
    shown = steps if len(steps) <= len(_PALETTE) else [steps[0], steps[len(steps) // 2], steps[-1]]
    handles = [Line2D([], [], color=colour[s], lw=3, label=f"step {s}") for s in shown] + handles
    if len(tensors) > 1 or tensors[0] in STREAMS:
        labels = {t: STREAMS[t][1] if t in STREAMS else t for t in tensors}
        handles += [Line2D([], [], color="black", ls=style[t], label=labels[t]) for t in tensors]
    every = max(1, math.ceil(len(blocks) / 40))  # at most 40 names on the axis (a real Flux has 57 blocks)
    ax.set_xticks(range(0, len(blocks), every))
    ax.set_xticklabels(blocks[::every], rotation=35, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_xlim(-0.5, len(blocks) - 0.5)
    ax.set_xlabel("block (execution order)")
    ax.set_title("Error along the DiT's blocks, per captured step")
    _legend(ax, handles)
    return _png(fig)


def steps_png(frame: pd.DataFrame) -> bytes | None:
    """rel L2 of noise_pred and latents at every denoising step. None when no step was compared."""
    series = step_series(frame)
    if not series:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    colours = {line.tensor: _PALETTE[i % len(_PALETTE)] for i, line in enumerate(series)}
    fig, ax = plt.subplots(figsize=(9.0, 3.6))
    handles = []
    branch_markers = iter("^vsd" * len(series))
    for line in series:
        # CFG branches (noise_pred_cond / _uncond): thinner, dashed, under the main lines, with hollow markers
        # of their own, so branches that lie on each other or on the guided prediction still show.
        branch = line.tensor not in STEP_TENSORS
        ls, lw, marker, z = ("--", 1.2, next(branch_markers), 2) if branch else ("-", 2.0, "o", 3)
        look: dict[str, Any] = {"ls": ls, "lw": lw, "marker": marker, "color": colours[line.tensor]}
        look |= {"ms": 7, "mfc": "none", "mew": 1.4} if branch else {"ms": 4}
        ax.plot(line.x, line.y, zorder=z, **look)
        handles.append(Line2D([], [], label=line.tensor, **look))
    _rel_l2_axis(ax, series)
    handles += _failures(ax, series) + _limit_lines(ax, series)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("denoising step")
    ax.set_title("Error along the denoising steps")
    _legend(ax, handles)
    return _png(fig)


# --- decoded frames ---------------------------------------------------------------------------------


def read_png(data: bytes) -> np.ndarray:
    """H x W x 3 uint8 pixels of a PNG file's bytes (greyscale repeated, alpha dropped)."""
    from matplotlib import image

    pixels = image.imread(io.BytesIO(data), format="png")  # floats in [0, 1] for an 8-bit PNG
    if pixels.dtype != np.uint8:
        pixels = np.round(np.asarray(pixels, dtype=np.float64) * 255.0).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, :3]


def png(pixels: np.ndarray) -> bytes:
    """A deflated PNG of H x W x 3 uint8 pixels."""
    from matplotlib import image

    buffer = io.BytesIO()
    image.imsave(buffer, pixels, format="png")
    return buffer.getvalue()


def difference(reference: np.ndarray, port: np.ndarray) -> np.ndarray:
    """|port - reference| per pixel in 8-bit levels, the largest over the colour channels (H x W, int)."""
    return np.abs(port.astype(np.int16) - reference.astype(np.int16)).max(axis=2)


def heatmap(levels: np.ndarray, scale_max: int) -> bytes:
    """The difference as a PNG, amplified: 0 black, `scale_max` levels (and above) the colour map's top."""
    import matplotlib

    lut = (matplotlib.colormaps[COLORMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
    index = np.clip(np.round(levels * (255.0 / max(1, scale_max))), 0, 255).astype(np.intp)
    return png(lut[index])


def scale_colours(count: int = 9) -> list[str]:
    """The heatmap's colour map at `count` even stops, as CSS colours (the legend's gradient)."""
    import matplotlib

    stops = matplotlib.colormaps[COLORMAP](np.linspace(0.0, 1.0, count))
    return ["#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in rgba[:3])) for rgba in stops]
