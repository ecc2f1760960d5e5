"""Tolerance policy: which (atol, rtol) a tensor must meet, by tensor kind and run dtype.

A float check passes when |port - ref| <= atol + rtol * |ref| elementwise (torch.testing.assert_close's
rule) and, where a kind sets one, the relative L2 error ||port - ref|| / ||ref|| stays within `rel_l2`:
the elementwise rule catches outliers, the norm rule catches small systematic errors (a dropped
shift, a slightly wrong scale) that bf16's wide elementwise tolerance would let through.
Exact kinds (token ids, masks, initial noise) must be equal. Overrides come from `[tool.parity]` in
pyproject.toml and from a case file, keyed by kind or by tensor name (tensor name wins).
The defaults and the measurements behind them are in docs/tolerances.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from parity import stages
from parity.errors import ParityError


@dataclass(frozen=True)
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0
    exact: bool = False
    rel_l2: float | None = None
    source: str = "default"
    text: str | None = None  # a rule that is not atol/rtol (frame similarity, the noise detector)

    def describe(self) -> str:
        if self.text is not None:
            return self.text
        if self.exact:
            return "exact"
        text = f"atol={self.atol:.3g} rtol={self.rtol:.3g}"
        return text if self.rel_l2 is None else f"{text} rel_l2<={self.rel_l2:.3g}"


EXACT = Tolerance(exact=True)
# Timesteps reach 1000, where one float32 ulp is 6.1e-5: 2 ulps relative, plus a floor for the 0 end.
FLOAT32_ROUNDING = Tolerance(atol=1e-6, rtol=2.4e-7)

# What the DiT's sinusoidal time embedding receives (the timestep, the guidance) is the same number on
# both sides whatever the dtype, or the DiT is conditioned on another time: its highest frequency turns
# a difference of 0.64 in t into 0.64 rad. Each library may compute it in float32 from its own units
# (t/1000 x 1000): 2 float32 ulps relative, in both dtypes. A bf16 run where one side rounds t to bf16
# and the other does not fails here (Flux: Diffusers embeds 888 for t = 888.64, SGLang 888.64).
TIME_EMBEDDING_INPUT = Tolerance(atol=1e-6, rtol=4.8e-7)

# kind -> tolerance, per run dtype. Calibrated on clean flux-tiny runs (docs/tolerances.md):
# each float tolerance sits about 10x above the largest clean error seen, and far below what
# the fault-injection plugins produce.
DEFAULTS: dict[str, dict[str, Tolerance]] = {
    "float32": {
        "tokens": EXACT,
        "schedule": FLOAT32_ROUNDING,
        "initial_noise": EXACT,
        "embeddings": Tolerance(atol=1e-4, rtol=1e-5, rel_l2=5e-5),
        "denoise_latents": Tolerance(atol=1e-5, rtol=1e-5, rel_l2=5e-5),
        "dit_output": Tolerance(atol=2e-5, rtol=1e-5, rel_l2=5e-5),
        "block_output": Tolerance(atol=1e-4, rtol=1e-5, rel_l2=5e-5),
        "pixels": Tolerance(atol=3e-5, rtol=0.0, rel_l2=5e-5),
        "dit_conditioning": Tolerance(atol=1e-6, rtol=4.8e-7),
        "time_embedding_input": TIME_EMBEDDING_INPUT,
    },
    "bfloat16": {
        "tokens": EXACT,
        "schedule": FLOAT32_ROUNDING,
        "initial_noise": EXACT,
        "embeddings": Tolerance(atol=0.1, rtol=0.02, rel_l2=0.02),
        "denoise_latents": Tolerance(atol=0.1, rtol=0.05, rel_l2=0.02),
        "dit_output": Tolerance(atol=0.25, rtol=0.05, rel_l2=0.1),
        "block_output": Tolerance(atol=0.15, rtol=0.05, rel_l2=0.05),
        "pixels": Tolerance(atol=0.15, rtol=0.0, rel_l2=0.04),
        # The DiT's timestep / guidance inputs differ by bf16 rounding: Diffusers rounds t to bf16 (t/1000,
        # then x1000 in its DiT), SGLang embeds the float32 t; both round guidance, in their own units
        # (guidance vs guidance*1000). Accepted as rounding: 2 bf16 ulps relative.
        "dit_conditioning": Tolerance(atol=1e-6, rtol=7.9e-3),
        "time_embedding_input": TIME_EMBEDDING_INPUT,
    },
}

# GPU runs have their own table, calibrated on clean runs on an NVIDIA H200 (docs/tolerances.md, "GPU tolerances":
# flux-tiny fp32 and bf16, flux-wide bf16 at real width, 28 steps; `python -m parity.margins` on the
# reports). fp32 (TF32 off, parity.numerics): every kind within the CPU limits with >= 3x margin, so
# the same limits. bf16, largest clean error -> limit: embeddings 0.030 / rel 0.0064 -> 0.1 / 0.02;
# latents 0.061 / 0.0085 -> 0.15 / 0.025; DiT output 0.080 / 0.031 -> 0.25 / 0.1; blocks 0.021 / 0.010
# -> 0.075 / 0.03; frames 0.057 / 0.0125 -> 0.15 / 0.04.
CUDA_DEFAULTS: dict[str, dict[str, Tolerance]] = {
    "float32": dict(DEFAULTS["float32"]),
    "bfloat16": {
        **DEFAULTS["bfloat16"],
        "denoise_latents": Tolerance(atol=0.15, rtol=0.05, rel_l2=0.025),
        "block_output": Tolerance(atol=0.075, rtol=0.05, rel_l2=0.03),
    },
}
DEFAULTS_BY_DEVICE = {"cpu": DEFAULTS, "cuda": CUDA_DEFAULTS}

# The port's ranks against the same port at one rank (--port-parallel): one library, the same weights and
# inputs; only the collectives' reduction order and the shards' arithmetic differ, so every float kind
# is held tighter than between the libraries. Calibrated on the clean 2-rank CPU runs of
# docs/families.md, "Multi-rank runs" (Qwen-Image at tp/ulysses/kvgather/cfg=2, Wan at tp/ulysses=2, fp32), largest
# difference per kind: blocks 8.9e-7 (rel L2 3.9e-7), DiT output 5.1e-6 (rel L2 1.6e-6), latents
# 1.0e-5 where they reach ~20 (rel L2 5.7e-7), embeddings 1.2e-6, frames 1.2e-6; tokens, noise and
# schedule bit-identical. One limit for every float kind, 6x above the largest relative error; bf16
# keeps the between-library limits (not yet measured at several ranks).
_ONE_RANK_FP32 = Tolerance(atol=1e-5, rtol=1e-5, rel_l2=1e-5)
ONE_RANK: dict[str, dict[str, Tolerance]] = {
    "float32": {
        **DEFAULTS["float32"],
        **dict.fromkeys(("embeddings", "denoise_latents", "dit_output", "block_output", "pixels"), _ONE_RANK_FP32),
    },
    "bfloat16": dict(DEFAULTS["bfloat16"]),
}


def one_rank_policy(dtype: str, device: str = "cpu") -> Policy:
    """The tolerances of the ranks against the one-rank port (ONE_RANK), named as such in every check."""
    return Policy(
        dtype,
        device=device,
        table={k: dataclasses.replace(t, source=f"one-rank {dtype}/{k}") for k, t in ONE_RANK[dtype].items()},
    )


# Decoded frames against the reference, on 8-bit values (parity.frames): the lowest SSIM and PSNR
# and the highest mean absolute difference accepted, per dtype. Calibrated on clean flux-tiny
# (docs/tolerances.md, "Frame checks and the noise detector"): fp32 SSIM 0.99999998, PSNR 90.3 dB,
# mean abs 6e-5; bf16 SSIM 0.99894, PSNR 44.7 dB, mean abs 0.93.
FRAME_LIMITS: dict[str, dict[str, float]] = {
    "float32": {"ssim": 0.999, "psnr_db": 50.0, "mean_abs_u8": 0.1},
    "bfloat16": {"ssim": 0.99, "psnr_db": 35.0, "mean_abs_u8": 3.0},
}

# Kind names differ from every canonical tensor name, so an override key is unambiguous:
# a kind ("embeddings") or a tensor ("prompt_embeds", "input_ids.1").
_KIND_BY_TENSOR = {
    "input_ids": "tokens",
    "attention_mask": "tokens",
    "prior_token_ids": "tokens",  # token ids a pipeline derives from the prompt (GLM-Image's AR prior)
    "timesteps": "schedule",
    "sigmas": "schedule",
    "noise_pred": "dit_output",
    "noise_pred_cond": "dit_output",
    "noise_pred_uncond": "dit_output",
    "frames": "pixels",
    "audio": "pixels",  # a decoded waveform (LTX-2), judged as decoded output
    "vae_input": "denoise_latents",
    "dit_input": "denoise_latents",
    "dit_timestep": "dit_conditioning",
    "dit_guidance": "dit_conditioning",
    "dit_time_embedding_input": "time_embedding_input",
}


def kind_of(stage: str, tensor: str) -> str:
    """The tolerance kind of a canonical tensor (`prompt_embeds.1` -> `embeddings`)."""
    base = tensor.split(".")[0].removeprefix("negative_")
    if base in _KIND_BY_TENSOR:
        return _KIND_BY_TENSOR[base]
    if base.endswith("_embeds"):
        return "embeddings"
    if base in ("latents", "audio_latents"):  # LTX-2's audio stream has initial noise of its own
        return "initial_noise" if stage == stages.LATENT_PREPARATION else "denoise_latents"
    return "block_output"


def _parse(entry: Any, where: str) -> Tolerance:
    if isinstance(entry, str) and entry == "exact":
        return Tolerance(exact=True, source=where)
    if not isinstance(entry, Mapping) or not set(entry) <= {"atol", "rtol", "rel_l2"} or not entry:
        raise ParityError(f'{where}: expected "exact" or a table of atol, rtol, rel_l2; got {entry!r}')
    numbers = {}
    for name, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ParityError(f"{where}: {name} must be a finite number >= 0, got {value!r}")
        numbers[name] = float(value)
    return Tolerance(numbers.get("atol", 0.0), numbers.get("rtol", 0.0), rel_l2=numbers.get("rel_l2"), source=where)


# Tensor names an override may use besides the kinds: every canonical tensor the harness records
# (with an optional `negative_` prefix and `.<encoder>` suffix), and the block outputs' names.
_NAMED_TENSORS = frozenset(_KIND_BY_TENSOR) | {"latents", "hidden_states", "encoder_hidden_states"}


def _known_name(name: str) -> bool:
    base = name.split(".")[0].removeprefix("negative_")
    return name in DEFAULTS["float32"] or base in _NAMED_TENSORS or base.endswith("_embeds")


def check_overrides(layer: Mapping[str, Any], where: str = "tolerance") -> None:
    """ParityError for the first key of an override layer that names no kind, tensor or dtype, or an
    entry that is not a tolerance: a typo must never be ignored silently."""
    for name, entry in layer.items():
        if name in DEFAULTS:  # a dtype's own table
            if not isinstance(entry, Mapping):
                raise ParityError(f"{where}.{name}: expected a table of kinds or tensors, got {entry!r}")
            check_overrides(entry, f"{where}.{name}")
            continue
        if not _known_name(name):
            raise ParityError(
                f"{where}: unknown key {name!r}; known kinds: {', '.join(DEFAULTS['float32'])}; "
                f"dtype tables: {', '.join(DEFAULTS)}; or a canonical tensor name (e.g. prompt_embeds, frames)"
            )
        _parse(entry, f"{where}.{name}")


class Policy:
    """Defaults plus layered overrides: later layers win (pyproject, then the case file)."""

    def __init__(
        self,
        dtype: str,
        overrides: Sequence[tuple[str, Mapping[str, Any]]] = (),
        device: str = "cpu",
        table: Mapping[str, Tolerance] | None = None,
    ) -> None:
        """`table`: the kinds' tolerances instead of the device's defaults (the one-rank comparison's)."""
        if dtype not in DEFAULTS:
            raise ParityError(f"no tolerances for dtype {dtype!r}; expected one of {sorted(DEFAULTS)}")
        if device not in DEFAULTS_BY_DEVICE:
            raise ParityError(f"no tolerances for device {device!r}; expected one of {sorted(DEFAULTS_BY_DEVICE)}")
        self.dtype = dtype
        where = "" if device == "cpu" else f"{device} "
        self._table: dict[str, Tolerance] = (
            dict(table)
            if table is not None
            else {
                k: dataclasses.replace(t, source=f"default {where}{dtype}/{k}")
                for k, t in DEFAULTS_BY_DEVICE[device][dtype].items()
            }
        )
        for origin, layer in overrides:
            check_overrides(layer, f"{origin} tolerance")
            # A layer is either {name: tol} for every dtype or {dtype: {name: tol}}.
            for name, entry in layer.items():
                if name in DEFAULTS:
                    if name == dtype:
                        for sub, sub_entry in entry.items():
                            self._table[sub] = _parse(sub_entry, f"{origin} {name}/{sub}")
                else:
                    self._table[name] = _parse(entry, f"{origin} {name}")

    def for_tensor(self, stage: str, tensor: str) -> Tolerance:
        base = tensor.split(".")[0]
        for name in (tensor, base, kind_of(stage, tensor)):
            if name in self._table:
                return self._table[name]
        raise ParityError(f"no tolerance for {tensor!r} (kind {kind_of(stage, tensor)!r})")
