"""Symptom -> likely cause, for the classic porting mistakes. A hint is shown only when the
trace holds its evidence (which tensors fail and which still match, and how they differ)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from parity import stages
from parity.compare import Check
from parity.evidence import MAX_TOKEN_SHIFT
from parity.vocab import Status

Hint = dict[str, str]


def _close(x: float | None, target: float, rel: float = 1e-3) -> bool:
    return x is not None and abs(x - target) <= rel * abs(target)


def _fits(check: Check, kind: str, limit: float = 1e-3) -> bool:
    """The port is (almost exactly) the reference under a fitted scale or offset."""
    residual = check.evidence.get(f"rel_l2_after_{kind}")
    return residual is not None and residual < limit


def _explains(check: Check, residual: float | None) -> bool:
    """What a fitted map (a token shift, a per-channel affine map) leaves is within the tensor's own rel L2
    tolerance (1e-3 at least, as `_fits`): the map explains the failure."""
    limit = max(1e-3, check.tolerance.rel_l2 or 0.0)
    return residual is not None and residual <= limit


def _few(values: list[float], shown: int = 4) -> str:
    """The first `shown` numbers of a per-channel list, "(a, b, c, d, ... of 16)"."""
    head = ", ".join(f"{v:.3g}" for v in values[:shown])
    return f"({head}{f', ... of {len(values)}' if len(values) > shown else ''})"


def _passed(checks: list[Check], tensor: str, step: int | None = None, prefix: bool = False) -> bool:
    found = [
        c
        for c in checks
        if (c.tensor.startswith(tensor) if prefix else c.tensor == tensor) and (step is None or c.step == step)
    ]
    return bool(found) and all(c.passed for c in found)


def _schedule(cause: Check, checks: list[Check]) -> Hint:
    ev = cause.evidence
    if ev.get("length_difference") in (-1, 1):
        why = "off-by-one: a terminal sigma appended or dropped, or num_inference_steps differs by one"
    elif _close(ev.get("fit_scale"), 1000.0) or _close(ev.get("fit_scale"), 1e-3):
        why = "a x1000 scale: timesteps in 0..1000 on one side and 0..1 on the other"
    elif _fits(cause, "scale"):
        why = (
            f"a constant factor ({ev['fit_scale']:.4g}): sigma scaling, or the shift / mu of dynamic "
            "shifting (image_seq_len, base_shift, max_shift) differs"
        )
    else:
        why = (
            "the shift or mu differs (dynamic shifting: image_seq_len, base/max shift), or the schedule is "
            "built differently (numpy vs list, float64 vs float32, linspace end points)"
        )
    return {"symptom": "sigmas/timesteps differ", "likely_cause": why}


def _token_window(cause: Check) -> Hint | None:
    """The port's tokens (ids or embeddings) are the reference's cut at another length or shifted by a few
    tokens (parity.evidence.token_shift): where the token window starts or ends differs."""
    ev = cause.evidence
    port_len, ref_len = ev.get("token_length_port"), ev.get("token_length_reference")
    shift = ev.get("token_shift")
    lined_up = shift is not None and _explains(cause, ev.get("rel_l2_after_token_shift"))
    if port_len is None and not lined_up:
        return None
    ids = cause.tensor.split(".")[0].endswith("input_ids")
    found = []
    if port_len is not None and ref_len is not None:
        found.append(f"{port_len} tokens in the port, {ref_len} in the reference ({port_len - ref_len:+d})")
    if lined_up and shift == 0:
        overlap, residual = ev["token_shift_overlap"], ev["rel_l2_after_token_shift"]
        found.append(f"their first {overlap} tokens agree (rel L2 {residual:.2g})")
    elif lined_up:
        found.append(
            f"shifted by {shift:+d} they agree: port token i{shift:+d} = reference token i over "
            f"{ev['token_shift_overlap']} tokens (rel L2 {ev['rel_l2_after_token_shift']:.2g})"
        )
    symptom = f"{cause.tensor} differ in their token window: " + "; ".join(found)
    prefix = "a token added at the start (BOS) or a prompt template that starts differently"
    if not ids:
        prefix = (
            "the chat-template prefix dropped at another index (prompt_template_encode_start_idx / drop_idx "
            f"off by {abs(shift or 0)}), or a BOS token added or stripped"
        )
    if lined_up and shift and shift > 0:
        why = f"the port keeps {shift} more token(s) at the start than the reference: {prefix}"
    elif lined_up and shift:
        why = f"the port drops {-shift} token(s) at the start that the reference keeps: {prefix}"
    elif lined_up and port_len is not None and ref_len is not None and port_len > ref_len:
        why = (
            f"the same tokens, {port_len - ref_len} more at the end in the port: a longer max length "
            "(max_sequence_length, the tokenizer's max_length), padding kept where the reference keeps only the "
            "attention-masked tokens, or an EOS token added"
        )
    elif lined_up:
        why = (
            f"the same tokens, the port stops {(ref_len or 0) - (port_len or 0)} earlier: a shorter max length or "
            "truncation, padding dropped where the reference pads to a fixed length, or an EOS token stripped"
        )
    else:
        why = (
            f"the token counts differ and no shift of up to {MAX_TOKEN_SHIFT} tokens lines them up: the prompt "
            "template, max length, padding or truncation differ, and the tokens themselves too"
        )
    return {"symptom": symptom, "likely_cause": why}


def _text(cause: Check, checks: list[Check]) -> Hint:
    window = _token_window(cause)
    if window is not None:
        return window
    if cause.tensor.split(".")[0].endswith(("input_ids", "attention_mask")):
        why = "tokenization: padding side or max_length, truncation, special tokens, or the prompt template"
        return {"symptom": f"{cause.tensor} differs", "likely_cause": why}
    why = (
        "equal token ids but different embeddings: wrong hidden layer (last vs penultimate), attention mask "
        "applied or not, padding / max sequence length, causal mask, or a missing final layer norm"
    )
    if _fits(cause, "scale"):
        why = f"embeddings are a scaled copy (x{cause.evidence['fit_scale']:.4g}): a missing or extra scale / norm"
    return {"symptom": "prompt_embeds differ", "likely_cause": why}


def _latents(cause: Check, checks: list[Check]) -> Hint:
    if cause.status == Status.SHAPE:
        why = "latent packing or shape order (packed tokens vs B x C x H x W, 4-D vs 5-D, channel count)"
    elif cause.evidence.get("same_values_reordered"):
        why = "the same noise in another order: packing, or height/width (or frame) axes swapped"
    else:
        why = "the noise itself: generator device (CPU vs GPU), dtype the noise is drawn in, or seed handling"
    return {"symptom": "initial latents differ", "likely_cause": why}


def _denoising(cause: Check, checks: list[Check], isolated: list[Check] | None = None) -> Hint | None:
    step = cause.step
    inputs_equal = _passed(checks, "dit_input", step) and _passed(checks, "dit_timestep", step)
    if stages.is_block_input(cause.block) and inputs_equal:
        why = "the DiT's input embedding: x_embedder / context_embedder (patchify, projection, text projection)"
        return {"symptom": "the embedded DiT inputs differ with equal inputs", "likely_cause": why}
    if cause.block is not None and inputs_equal:
        blocks = [c for c in checks if c.block is not None and not stages.is_block_input(c.block) and c.step == step]
        first_block = min(blocks, key=Check.execution_key)
        if cause.block == first_block.block:
            why = (
                "the first block differs with equal DiT inputs: RoPE style (interleaved vs split-half) or "
                "positions, modulation shift/scale/gate order, norm eps, or the timestep / guidance embedding"
            )
            return {"symptom": f"block {cause.block} differs with equal inputs", "likely_cause": why}
        return _later_block(cause, blocks, checks, isolated)
    if (
        cause.tensor == "noise_pred"
        and _passed(checks, "noise_pred_cond", step)
        and _passed(checks, "noise_pred_uncond", step)
    ):
        why = (
            "both CFG branches match but the guided prediction does not: the guidance formula "
            "(uncond + s * (cond - uncond)), the scale used (true_cfg_scale vs guidance_scale), or renormalization"
        )
        return {"symptom": "CFG output differs with equal branches", "likely_cause": why}
    if cause.tensor in _BRANCHES:
        one = _one_branch(cause, checks)
        if one is not None:
            return one
    if cause.tensor in ("noise_pred", "noise_pred_cond") and inputs_equal:
        after = _after_last_block(cause, checks)
        if after is not None:
            return after
    if cause.tensor == "dit_timestep":
        return _schedule(cause, checks) | {"symptom": "the DiT's timestep input differs"}
    if cause.tensor.startswith("dit_time_embedding_input"):
        return _time_embedding(cause)
    return None


# A CFG branch's DiT output -> (the branch, the other branch's output, what only this branch receives).
_BRANCHES = {
    "noise_pred_uncond": (
        "unconditional",
        "noise_pred_cond",
        "the negative branch's inputs: negative_prompt_embeds as the DiT receives them (its attention mask, its "
        "length: padding or truncation, the text lengths its RoPE is built for), the negative branch's timestep "
        "or guidance",
    ),
    "noise_pred_cond": (
        "conditional",
        "noise_pred_uncond",
        "the positive branch's inputs: prompt_embeds as the DiT receives them (attention mask, length, the text "
        "lengths its RoPE is built for), the positive branch's timestep or guidance",
    ),
}


def _one_branch(cause: Check, checks: list[Check]) -> Hint | None:
    """One CFG branch's DiT output differs while the other's, at the same step, matches: what only that
    branch receives differs (the DiT and the latents are the same for both)."""
    branch, other, inputs = _BRANCHES[cause.tensor]
    if not _passed(checks, other, cause.step):
        return None
    found = f" (rel L2 {cause.metrics.rel_l2:.3g})" if cause.metrics is not None else ""
    symptom = f"only the {branch} CFG branch differs at step {cause.step}: {cause.tensor} fails{found}, {other} passes"
    why = f"{inputs}, or the branch order (which call is taken as the conditional one, how a batched call is split)"
    negative = branch == "unconditional"
    embeds = [
        c
        for c in checks
        if c.stage == stages.TEXT_ENCODING
        and c.tensor.split(".")[0].endswith("_embeds")
        and c.tensor.startswith("negative_") == negative
    ]
    if embeds and all(c.passed for c in embeds):
        names = ", ".join(sorted({c.tensor for c in embeds}))
        why += (
            f"; {names} match at text encoding, so it enters after it: where the denoising stage hands that "
            "branch its embeddings, mask and lengths"
        )
    return {"symptom": symptom, "likely_cause": why}


def _after_last_block(cause: Check, checks: list[Check]) -> Hint | None:
    """The DiT's output differs at a step whose captured blocks (and embedded inputs) all pass: what runs
    after the last block. Blocks are captured in the conditional branch only, so this reads the
    conditional output (or the only one, without CFG)."""
    step = cause.step
    if cause.tensor == "noise_pred" and any(c.tensor in _BRANCHES and c.step == step for c in checks):
        return None  # under CFG the branches' outputs say it (the rules above)
    blocks = [c for c in checks if c.stage == stages.DENOISING and c.step == step and c.block is not None]
    outputs = [c for c in blocks if not stages.is_block_input(c.block)]
    if not outputs or not all(c.passed for c in blocks):
        return None
    worst = max(outputs, key=_limit_share)
    last = max(outputs, key=Check.execution_key).block
    count = len({c.block for c in outputs})
    found = f"; {cause.tensor} rel L2 {cause.metrics.rel_l2:.3g}" if cause.metrics is not None else ""
    symptom = (
        f"the DiT's output differs at step {step} while all {count} captured blocks of that step pass (the worst, "
        f"{worst.tensor} of block {worst.block}, at {_limit_share(worst):.2g}x its limit){found}"
    )
    why = (
        f"what runs after the last block ({last}): the final norm (norm_out: its eps, the order of its "
        "modulation's scale and shift), proj_out, or unpatchify (tokens back to the latent layout)"
    )
    if _fits(cause, "scale"):
        scale = cause.evidence["fit_scale"]
        why += f"; the output is a scaled copy (x{scale:.4g}): a scale in the final modulation or proj_out"
    elif cause.evidence.get("same_values_reordered"):
        why += "; the output holds the reference's values in another order: unpatchify's axis order"
    return {"symptom": symptom, "likely_cause": why}


def _time_embedding(cause: Check) -> Hint:
    """The DiT's sinusoidal time embedding receives another number on the two sides."""
    found = cause.metrics.max_abs if cause.metrics is not None else math.nan
    symptom = f"the DiTs embed different times: their time embeddings' input differs by {found:.3g}"
    rounded = {
        side: dtype
        for side, other in (("reference", "port"), ("port", "reference"))
        for dtype in ("bfloat16", "float16")
        if cause.evidence.get(f"{side}_is_{other}_rounded_to_{dtype}")
    }
    if rounded:
        side, dtype = next(iter(rounded.items()))
        other = "port" if side == "reference" else "reference"
        why = (
            f"the {side} rounds it to {dtype} before embedding it and the {other} does not (Diffusers' Flux casts "
            f"t to the latents' dtype and its DiT multiplies t/1000 back by 1000 in that dtype): the embedding's "
            f"highest frequency sees up to {found:.3g} rad of difference. Round it the same way in the port, or "
            "accept it knowingly with a case tolerance for dit_time_embedding_input"
        )
    elif any(cause.evidence.get(f"ulps_{dtype}", math.inf) <= 2 for dtype in ("bfloat16", "float16")):
        dtype = next(d for d in ("bfloat16", "float16") if cause.evidence.get(f"ulps_{d}", math.inf) <= 2)
        why = (
            f"both sides round it to {dtype}, at different points ({cause.evidence[f'ulps_{dtype}']:.3g} {dtype} "
            "steps apart): e.g. t rounded, then t/1000 rounded again, against t/1000 rounded once. Round it where "
            "the reference does, or accept it knowingly with a case tolerance for dit_time_embedding_input"
        )
    else:
        why = (
            "the DiT embeds another number: its scale (t vs t/1000, guidance x1000), the dtype it is cast to "
            "before the embedding, or which step's t it gets"
        )
    return {"symptom": symptom, "likely_cause": why}


# A block whose error takes at least this many times the share of its limit the block before took
# is a step change at that block; less is growth along the blocks that crossed the limit there.
JUMP = 3.0


def _limit_share(check: Check) -> float:
    """How much of its tolerance a check's error takes (1 = at the limit): the larger of rel_l2 against
    its limit and the smallest passing atol against the atol."""
    tol, found = check.tolerance, check.metrics
    shares = [0.0]
    if found is not None and tol.rel_l2 and math.isfinite(found.rel_l2):
        shares.append(found.rel_l2 / tol.rel_l2)
    if tol.atol > 0 and math.isfinite(check.min_atol):
        shares.append(check.min_atol / tol.atol)
    return max(shares)


def _later_block(cause: Check, blocks: list[Check], checks: list[Check], isolated: list[Check] | None) -> Hint:
    """A block after the first fails while the DiT's inputs pass: a step change at this block (its own
    code), or an error that grew along the blocks and crossed the limit here (drift). The error
    profile along the step's blocks, for the same tensor, tells them apart; isolated mode confirms."""
    profile = sorted((c for c in blocks if c.tensor == cause.tensor), key=Check.execution_key)
    at = next((i for i, c in enumerate(profile) if c.block == cause.block), 0)
    share, before = _limit_share(cause), _limit_share(profile[at - 1]) if at else 0.0
    if at == 0 or share >= JUMP * before:
        why = f"earlier blocks match: the code of block {cause.block} itself (attention, MLP, modulation, residual)"
        jump = f" (its error takes {share:.3g}x its limit, the block before {before:.2g}x)" if at else ""
        return {"symptom": f"block {cause.block} is the first block to differ{jump}", "likely_cause": why}
    first = profile[0]
    symptom = (
        f"the error grows along the blocks and crosses the limit at block {cause.block}: {before:.2g}x its "
        f"limit at the block before, {_limit_share(first):.2g}x at {first.block}"
    )
    why = "accumulated drift, not one block's code: each block adds a little and the depth amplifies it"
    step = cause.step
    nearby = [
        f"the DiT's {c.tensor.removeprefix('dit_')} input differs by {c.metrics.max_abs:.3g} at step {step} "
        "(within its tolerance)"
        for c in checks
        if c.tensor in ("dit_timestep", "dit_guidance", "dit_input")
        and c.step == step
        and c.passed
        and c.metrics is not None
        and c.metrics.max_abs > 0
    ]
    if nearby:
        why += "; what it grows from: " + "; ".join(nearby)
    alone = [c for c in isolated or () if c.block == cause.block and c.tensor == cause.tensor and c.step == step]
    if alone and all(c.passed for c in alone):
        why += f"; in isolated mode block {cause.block} passes on the reference's inputs"
    elif not alone:
        why += f"; `--mode isolated` checks block {cause.block} on the reference's inputs"
    return {"symptom": symptom, "likely_cause": why}


def _decoding(cause: Check, checks: list[Check]) -> Hint:
    noisy = [c for c in checks if c.tensor == "frames_noise" and not c.passed]
    if cause.tensor in ("frames", "frames_similarity") and noisy:
        cause = noisy[0]
    if cause.tensor == "frames_noise":
        why = (
            "the decoder got wrong latents (unscaled or un-shifted, still packed, wrong channel order), "
            "decoder weights not loaded, NaNs in the decoder, or a wrong output denormalization"
        )
        return {"symptom": f"the port's frames look like {cause.status}", "likely_cause": why}
    channels = _per_channel(cause)
    if cause.tensor == "vae_input":
        if _fits(cause, "offset"):
            why = f"latents offset by {cause.evidence['fit_offset']:.4g} before decode: the VAE shift_factor"
        elif _fits(cause, "scale"):
            why = f"latents scaled by {cause.evidence['fit_scale']:.4g} before decode: the VAE scaling_factor"
        elif channels is not None:
            symptom, same = channels
            why = (
                "the latent de-normalization before decode: latents_mean / latents_std swapped, latents_std "
                "inverted (divided where the reference multiplies, or the other way), or the mean added before "
                "scaling"
            )
            if same:
                why = (
                    "latents scaled and shifted before decode by one map for every channel: scaling_factor and "
                    "shift_factor both"
                )
            return {"symptom": symptom, "likely_cause": why}
        else:
            why = "latent de-normalization before decode (scaling/shift, latents_mean/std) or unpacking"
    elif cause.tensor == "frames" and channels is not None:
        symptom, same = channels
        why = (
            "a per-channel transform of the decoded image on one side: a per-channel output (de)normalization "
            "(mean / std per RGB channel), or the decoder's output range mapped per channel"
        )
        if same:
            why = "one affine map for every channel: the output denormalization ([-1, 1] -> [0, 1]) done differently"
        return {"symptom": symptom, "likely_cause": why}
    else:
        why = (
            "equal decoder input, different frames: VAE precision (fp32 vs bf16 decode), output "
            "denormalization ([-1, 1] -> [0, 1]), clamping, or the VAE scale factor"
        )
    return {"symptom": "only the decoded frames differ", "likely_cause": why}


def _per_channel(cause: Check) -> tuple[str, bool] | None:
    """(symptom, whether one map fits every channel) when a per-channel affine map explains the port
    (parity.evidence.channel_affine) and no single scale or offset does; None otherwise."""
    ev = cause.evidence
    scale, offset = ev.get("channel_fit_scale"), ev.get("channel_fit_offset")
    if not scale or not offset or _fits(cause, "scale") or _fits(cause, "offset"):
        return None
    if not _explains(cause, ev.get("rel_l2_after_channel_affine")):
        return None
    widest = max(abs(a) for a in scale)
    same = max(scale) - min(scale) <= 1e-3 * widest and max(offset) - min(offset) <= 1e-3 * max(1.0, widest)
    symptom = (
        f"{cause.tensor} is a per-channel affine map of the reference's: port_c = a_c * reference_c + b_c with "
        f"a = {_few(scale)}, b = {_few(offset)} over its {len(scale)} channels (axis 1), leaving rel L2 "
        f"{ev['rel_l2_after_channel_affine']:.2g}; no single scale or offset fits (rel L2 after them "
        f"{ev.get('rel_l2_after_scale', math.nan):.2g}, {ev.get('rel_l2_after_offset', math.nan):.2g})"
    )
    return symptom, same


def _first_nonfinite(checks: list[Check], side: str) -> Check | None:
    """The earliest check, in execution order, whose `side` ("port" or "reference") holds NaN/Inf."""
    found = [c for c in checks if c.metrics is not None and getattr(c.metrics, f"{side}_nonfinite") > 0]
    return min(found, key=Check.execution_key) if found else None


def _nonfinite(cause: Check, checks: list[Check]) -> Hint | None:
    """NaN/Inf on one side and not the other: the earliest check (execution order) where the port
    holds them (the reference, when only it has them), and the usual reasons. None when the cause
    counts none (the decoded frames' noise check), for the stage's own rule."""
    if cause.metrics is None:
        return None
    side = "port" if cause.metrics.port_nonfinite > 0 else "reference"
    first = _first_nonfinite(checks, side) or cause
    found = first.metrics or cause.metrics  # _first_nonfinite picks checks with metrics
    count, total = getattr(found, f"{side}_nonfinite"), math.prod(found.port_shape)
    where = first.label()
    if first.block is None and first.tensor.startswith("noise_pred"):
        where += " (the DiT's output)"
    symptom = f"NaN/Inf in the {side}, first at {where}: {count} of {total} elements"
    why = (
        f"a numerical fault in what computes {first.label()}: fp16/bf16 overflow in attention (scores, "
        "softmax) or in a norm (the variance of large activations), a division by a zero norm (eps "
        "missing, or added after the sqrt), an uninitialised buffer (torch.empty read before it is "
        "written), or the log of 0"
    )
    if side == "reference":
        why = "the reference itself, not the port: " + why
    return {"symptom": symptom, "likely_cause": why}


# The Req contract (parity.contract): what the stage before denoising got wrong, by field.
_CONTRACT = {
    "latents_seed": (
        "the request's seed never reaches the generator that draws the initial noise: a pipeline without "
        "InputValidationStage (the stage that turns `seed` into Req.generator), a torch.Generator made without "
        "manual_seed(seed), or randn_tensor called with generator=None (torch's global RNG)"
    ),
    "prompt_embeds": (
        "the stage before denoising stores a bare tensor, or drops an encoder's output: Req.prompt_embeds "
        "holds one tensor per text encoder, in the order the pipeline config's get_pos_prompt_embeds indexes"
    ),
    "negative_prompt_embeds": "under CFG Req.negative_prompt_embeds is a list like Req.prompt_embeds",
    "raw_latent_shape": (
        "set Req.raw_latent_shape = latents.shape after packing, as SGLang's LatentPreparationStage does "
        "(not the shape before packing): the denoiser reads the batch size and token count from it"
    ),
    "generator": "Req.generator is a torch.Generator (or a list of them) seeded from the request's seed",
}


def _contract(cause: Check, checks: list[Check]) -> Hint:
    field = cause.tensor
    why = _CONTRACT.get(field, f"the stage before denoising sets Req.{field} other than the denoiser expects")
    if field == "latents_seed":
        return {"symptom": "the port's initial noise does not reproduce from the case's seed", "likely_cause": why}
    return {"symptom": f"the port's Req.{field} breaks the contract the denoising stage expects", "likely_cause": why}


def _audit(cause: Check, checks: list[Check]) -> Hint:
    """The float64 audit flagged a component: a logic difference below the run dtype's rounding."""
    found = cause.metrics.rel_l2 if cause.metrics is not None else math.nan
    where = cause.block or "the DiT call"
    limit, hides_under = cause.evidence.get("limit", math.nan), cause.evidence.get("hides_under", "?")
    symptom = (
        f"in float64, on the reference's inputs, {where} gives another {cause.tensor} (rel L2 {found:.3g}, beyond "
        f"the {limit:.2g} rounding explains; it hides under the run's tolerance {hides_under})"
    )
    why = (
        "a logic difference too small for the run dtype to show: a constant slightly off (a norm's eps, RoPE theta, "
        "a scale such as 1/sqrt(head_dim) or the timestep's), a small term dropped or added, an input rounded to a "
        "lower precision on one side (float32 RoPE tables or time embeddings where the other side keeps float64)"
    )
    if cause.evidence.get("kind") == "embedders":
        why = "in the DiT's input embedding (patchify, x/context embedder, time and text projections): " + why
    return {"symptom": symptom, "likely_cause": why}


RULES: dict[str, Callable[[Check, list[Check]], Hint | None]] = {
    stages.AUDIT: _audit,
    stages.CONTRACT: _contract,
    stages.TEXT_ENCODING: _text,
    stages.LATENT_PREPARATION: _latents,
    stages.TIMESTEP_PREPARATION: _schedule,
    stages.DENOISING: _denoising,
    stages.DECODING: _decoding,
}


def for_causes(causes: Iterable[Check], checks: list[Check], isolated: list[Check] | None = None) -> list[dict]:
    """One hint per cause (a verdict's `causes`) that `checks`, the whole comparison, holds evidence for;
    `isolated`: the isolated run's checks, when the run made one beside a full run."""
    out = []
    for cause in causes:
        hint = _nonfinite(cause, checks) if cause.status == Status.NONFINITE else None
        if hint is None:
            rule = RULES[cause.stage]
            hint = _denoising(cause, checks, isolated) if rule is _denoising else rule(cause, checks)
        if hint is not None:
            out.append({"at": cause.label(), **hint})
    return out
