"""Per-component accuracy (isolated mode): which port component each check judges, and one
table row per component with its worst metrics over steps and blocks."""

from __future__ import annotations

import math

from parity import stages
from parity.compare import Check

_BY_TENSOR = {
    "dit_input": "DiT input glue (latents, timestep, guidance handed to the DiT)",
    "dit_timestep": "DiT input glue (latents, timestep, guidance handed to the DiT)",
    "dit_guidance": "DiT input glue (latents, timestep, guidance handed to the DiT)",
    "dit_time_embedding_input": "DiT time embedding input (the timestep, guidance it embeds)",
    "noise_pred_cond": "DiT",
    "noise_pred_uncond": "DiT",
    "vae_input": "decode de-normalization (scale, shift, unpack)",
    "frames": "VAE decode and postprocess",
}


def component_of(check: Check, cfg: bool) -> str:
    base = check.tensor.split(".")[0].removeprefix("negative_")
    if check.stage == stages.AUDIT:  # the float64 audit's components are named apart from the run dtype's
        return f"float64 audit: {'DiT' if check.block is None else check.block}"
    if check.block is not None:
        return "DiT embedders" if check.block == "embedders" else f"DiT block {check.block}"
    if check.stage == stages.CONTRACT:
        return "Req contract"
    if check.stage == stages.TEXT_ENCODING:
        return "tokenizers" if base in ("input_ids", "attention_mask") else "text encoders"
    if check.stage == stages.LATENT_PREPARATION:
        return "latent preparation"
    if check.stage == stages.TIMESTEP_PREPARATION:
        return "timestep preparation"
    if base == "noise_pred":
        return "CFG combine" if cfg else "DiT"
    if base == "latents":
        return "scheduler step"
    return _BY_TENSOR.get(base, check.tensor)


def table(checks: list[Check], cfg: bool) -> list[dict]:
    """One row per component, in execution order of its first check."""
    rows: dict[str, dict] = {}
    for check in sorted(checks, key=Check.execution_key):
        name = component_of(check, cfg)
        row = rows.setdefault(
            name,
            {
                "component": name,
                "checks": 0,
                "failed": 0,
                "max_abs": 0.0,
                "rel_l2": 0.0,
                "cosine": 1.0,
                "sqnr_db": math.inf,
                "passed": True,
            },
        )
        row["checks"] += 1
        row["failed"] += not check.passed
        row["passed"] &= check.passed
        m = check.metrics
        if m is None or not m.shape_match:
            row["max_abs"] = row["rel_l2"] = math.nan
            continue
        for key, worst in (("max_abs", max), ("rel_l2", max), ("cosine", min), ("sqnr_db", min)):
            value = getattr(m, key)
            if not math.isnan(value) and not math.isnan(row[key]):
                row[key] = worst(row[key], value)
    return list(rows.values())
