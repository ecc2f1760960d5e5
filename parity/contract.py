"""The Req contract: what the port's denoising stage receives from the stages before it, judged as
checks of stage `contract` (one per Req field) that order before every tensor comparison.

SGLang's skill (sglang-diffusion-add-model) lists what the standard DenoisingStage expects; a wrong type
there crashes deep inside denoising or, worse, runs (a seed ignored). SGLang 0.5.23 verifies part of it
itself (`verify_input` / `verify_output` of every stage, StageVerificationError naming the fields); this
module turns those failures into checks and checks what SGLang does not: the number of prompt embeddings,
`raw_latent_shape` against the latents, and whether the initial noise reproduces from the case's seed.
Where the skill and the pinned code disagree, the code is followed and the skill's rule is a warning.

Pure: the runner hands over a plain description of the Req (`describe`: types, lengths, shapes, the
generator's seed and state), so every rule is tested without SGLang.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from parity import stages
from parity.compare import Check
from parity.tolerance import Tolerance
from parity.vocab import Status

# torch's seed of a generator nobody seeded (c10's default_rng_seed_val).
UNSEEDED = torch.Generator().initial_seed()
SOURCE = "Req contract (SGLang skill, checked against sglang 0.5.23's DenoisingStage)"

# The skill's rule for each field the standard DenoisingStage expects, as the messages quote it.
SKILL = {
    "prompt_embeds": "a list of tensors, one per text encoder, not a single tensor (wrap it: [tensor])",
    "negative_prompt_embeds": "under CFG, a list of tensors like prompt_embeds",
    "latents": "a tensor: the initial noise",
    "timesteps": "a tensor",
    "num_inference_steps": "an int",
    "sigmas": "a Python list, not a numpy array (use .tolist())",
    "generator": "a torch.Generator (or a list of them) seeded from the request's seed",
    "raw_latent_shape": "the latents' shape before packing, which DecodingStage uses to unpack them",
    "height": "an int, the output height",
    "width": "an int, the output width",
    "latents_seed": "the initial noise is drawn from the generator seeded with the request's seed",
}
# What the harness holds a field to where sglang 0.5.23's code says otherwise than the skill.
CODE = {
    "raw_latent_shape": (
        "the shape of Req.latents as the denoiser receives them: sglang 0.5.23's LatentPreparationStage sets "
        "it after packing, DenoisingStage reads [0] as the batch size and [1] as the token count when it "
        "trims sequence-parallel padding (DecodingStage does not read it)"
    ),
}
# The fields described for the report, in the order their checks are listed.
FIELDS = (
    "prompt_embeds",
    "negative_prompt_embeds",
    "latents",
    "timesteps",
    "num_inference_steps",
    "sigmas",
    "generator",
    "raw_latent_shape",
    "height",
    "width",
    "do_classifier_free_guidance",
)


def describe(value: Any) -> dict[str, Any]:
    """A JSON-able description of one Req field: its type, and its shape, length, items or value."""
    if value is None:
        return {"type": "None"}
    if isinstance(value, torch.Generator):
        fresh = torch.Generator(value.device).manual_seed(value.initial_seed())
        return {
            "type": "Generator",
            "device": str(value.device),
            "initial_seed": value.initial_seed(),
            # torch.manual_seed(s) returns the process-global generator: no request of its own
            "global": value is torch.default_generator,
            "drawn": not torch.equal(value.get_state(), fresh.get_state()),
        }
    if isinstance(value, torch.Tensor):
        return {"type": "Tensor", "shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        return {"type": "ndarray", "shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, torch.Size) or (isinstance(value, tuple) and all(isinstance(v, int) for v in value)):
        return {"type": type(value).__name__, "value": [int(v) for v in value]}
    if isinstance(value, (list, tuple)):
        return {"type": type(value).__name__, "length": len(value), "items": [describe(v) for v in value]}
    if isinstance(value, (bool, int, float, str)):
        return {"type": type(value).__name__, "value": value}
    return {"type": f"{type(value).__module__}.{type(value).__qualname__}"}


def _what(desc: Mapping[str, Any] | None) -> str:
    """How a message names a described value: `a list of 1 (Tensor)`, `a Tensor [1, 64, 16]`, `None`."""
    if desc is None:
        return "absent"
    kind = desc["type"]
    a = "an" if kind in ("int", "ndarray") else "a"
    if "items" in desc:
        items = ", ".join(_what(i) if "items" in i else i["type"] for i in desc["items"])
        return f"{a} {kind} of {desc['length']} ({items})"
    if "shape" in desc:
        return f"{a} {kind} {desc['shape']}"
    if "value" in desc:
        return f"{kind} {tuple(desc['value']) if isinstance(desc['value'], list) else desc['value']}"
    return kind if kind == "None" else f"{a} {kind}"


@dataclass(frozen=True)
class Finding:
    """One Req field judged: `rule` is what it is held to, `message` why it fails (empty when it passes)."""

    field: str
    passed: bool
    rule: str
    message: str = ""

    def check(self, order: int) -> Check:
        return Check(
            stage=stages.CONTRACT,
            tensor=self.field,
            step=None,
            block=None,
            passed=self.passed,
            status=Status.OK if self.passed else Status.MISMATCH,
            tolerance=Tolerance(source=SOURCE, text=self.rule),
            message=self.message,
            order=order,
        )


@dataclass(frozen=True)
class Expected:
    """What the harness knows the port's Req must hold, beside the Req itself."""

    prompt_embeds: int  # tensors in Req.prompt_embeds (the family adapter's contract)
    seed: int  # the case's seed
    canonical_latents: tuple[int, ...] | None = None  # the port's initial latents, unpacked (B x C x [T x] H x W)


def verification_findings(view: Mapping[str, Any]) -> dict[str, Finding]:
    """SGLang's own verification failures (a StageVerificationError), one finding per failed field, with
    the skill's rule for it where the skill has one."""
    found: dict[str, Finding] = {}
    for failed in view.get("verification", ()):
        for field, details in failed["fields"].items():
            if field in found:
                continue
            skill = f"; the skill: {field} is {SKILL[field]}" if field in SKILL else ""
            message = (
                f"SGLang's {failed['stage']}.verify_{failed['check']} rejected Req.{field} "
                f"(StageVerificationError): {'; '.join(details)}{skill}"
            )
            found[field] = Finding(field, False, f"SGLang's {failed['stage']} {failed['check']} verification", message)
    return found


def _embeds(fields: Mapping[str, Any], name: str, count: int, why: str) -> Finding:
    desc = fields.get(name)
    rule = f"a list of {count} tensor{'s' if count != 1 else ''} ({why})"
    if desc is None or desc["type"] not in ("list", "tuple"):
        return Finding(name, False, rule, f"Req.{name} is {_what(desc)}, not a list; the skill: {SKILL[name]}")
    if any(item["type"] != "Tensor" for item in desc["items"]):
        return Finding(name, False, rule, f"Req.{name} is {_what(desc)}: every item must be a tensor")
    if desc["length"] != count:
        held = f"{desc['length']} tensor{'s' if desc['length'] != 1 else ''}"
        return Finding(name, False, rule, f"Req.{name} holds {held} where {count} are expected ({why})")
    return Finding(name, True, rule)


def _typed(fields: Mapping[str, Any], name: str, kinds: tuple[str, ...], rule: str) -> Finding:
    desc = fields.get(name)
    if desc is not None and desc["type"] in kinds:
        if desc["type"] == "int" and desc["value"] <= 0:
            return Finding(name, False, rule, f"Req.{name} is {desc['value']}, not a positive int")
        return Finding(name, True, rule)
    return Finding(name, False, rule, f"Req.{name} is {_what(desc)}; the skill: {name} is {SKILL[name]}")


def _generator(fields: Mapping[str, Any]) -> Finding:
    rule = "a torch.Generator or a non-empty list of them"
    desc = fields.get("generator")
    items = desc.get("items", []) if desc is not None else []
    if desc is not None and (desc["type"] == "Generator" or (items and all(i["type"] == "Generator" for i in items))):
        return Finding("generator", True, rule)
    return Finding(
        "generator", False, rule, f"Req.generator is {_what(desc)}; the skill: generator is {SKILL['generator']}"
    )


def _raw_latent_shape(fields: Mapping[str, Any], expected: Expected) -> Finding:
    rule = "equal to Req.latents.shape (" + CODE["raw_latent_shape"] + ")"
    desc, latents = fields.get("raw_latent_shape"), fields.get("latents")
    if desc is None or desc["type"] not in ("Size", "tuple"):
        message = f"Req.raw_latent_shape is {_what(desc)}, not a tuple of ints (torch.Size): DenoisingStage reads [0]"
        return Finding("raw_latent_shape", False, rule, message)
    if latents is None or "shape" not in latents or desc["value"] == latents["shape"]:
        return Finding("raw_latent_shape", True, rule)
    before = expected.canonical_latents is not None and tuple(desc["value"]) == expected.canonical_latents
    reading = " (the shape before packing, as the skill describes it)" if before else ""
    message = (
        f"Req.raw_latent_shape is {tuple(desc['value'])}{reading} but Req.latents is {tuple(latents['shape'])}: "
        f"sglang 0.5.23 holds it to {CODE['raw_latent_shape']}"
    )
    return Finding("raw_latent_shape", False, rule, message)


def judge(view: Mapping[str, Any], expected: Expected) -> list[Finding]:
    """Every Req field the standard DenoisingStage expects, judged; SGLang's own verification failures
    replace the harness's finding on the same field. A model-specific denoiser (not a DenoisingStage:
    Helios' chunked stage) owns its own contract: only SGLang's verification is reported for it."""
    verified = verification_findings(view)
    findings: list[Finding] = []
    if view.get("standard") and "fields" in view:
        fields = view["fields"]
        encoders = view.get("text_encoders") or []
        why = (
            f"one per text encoder: {', '.join(encoders)}"
            if len(encoders) == expected.prompt_embeds
            else (f"as this family's pipeline hands them to the denoiser; {len(encoders)} text encoders loaded")
        )
        findings.append(_embeds(fields, "prompt_embeds", expected.prompt_embeds, why))
        cfg = fields.get("do_classifier_free_guidance", {}).get("value") is True
        if cfg:
            findings.append(
                _embeds(fields, "negative_prompt_embeds", expected.prompt_embeds, "as prompt_embeds, under CFG")
            )
        findings.append(_typed(fields, "latents", ("Tensor",), "a tensor"))
        findings.append(_typed(fields, "timesteps", ("Tensor",), "a tensor"))
        findings.append(_typed(fields, "num_inference_steps", ("int",), "a positive int"))
        findings.append(_generator(fields))
        findings.append(_raw_latent_shape(fields, expected))
        findings.append(_typed(fields, "height", ("int",), "a positive int"))
        findings.append(_typed(fields, "width", ("int",), "a positive int"))
    by_field = {f.field: f for f in findings}
    by_field.update(verified)
    return list(by_field.values())


def warnings(view: Mapping[str, Any], expected: Expected) -> list[str]:
    """Where the port follows sglang 0.5.23's code and not the skill's letter: the skill's rule, and why
    it is not held against the port."""
    if not view.get("standard") or "fields" not in view:
        return []
    fields, out = view["fields"], []
    sigmas = fields.get("sigmas", {"type": "None"})
    if sigmas["type"] not in ("None", "list"):
        out.append(
            f"sigmas: Req.sigmas is {_what(sigmas)}; the skill says {SKILL['sigmas']}, but sglang 0.5.23's "
            "DenoisingStage neither checks nor reads it (it takes the schedule from the request's scheduler) and "
            "SGLang's own PipelineConfig._prepare_sigmas returns a numpy array: not held against the port"
        )
    raw, latents = fields.get("raw_latent_shape"), fields.get("latents")
    packed = (
        raw is not None
        and "value" in raw
        and latents is not None
        and raw["value"] == latents.get("shape")
        and expected.canonical_latents is not None
        and len(raw["value"]) < len(expected.canonical_latents)
    )
    if packed:
        assert raw is not None and expected.canonical_latents is not None
        out.append(
            f"raw_latent_shape: {tuple(raw['value'])} is the packed latents' shape; the skill says "
            f"{SKILL['raw_latent_shape']} ({expected.canonical_latents} here), but the harness follows the code: "
            f"{CODE['raw_latent_shape']}"
        )
    encoders = view.get("text_encoders") or []
    if encoders and len(encoders) != expected.prompt_embeds:
        out.append(
            f"prompt_embeds: the skill says one tensor per text encoder ({len(encoders)} loaded: "
            f"{', '.join(encoders)}); this family's pipeline hands its denoiser {expected.prompt_embeds} (its own "
            "code merges or splits them before denoising): held to the family's count"
        )
    return out


# --- the seed -------------------------------------------------------------------------------------------

# Two draws of the same noise (one rounded to bf16, or reordered by a packing bug) correlate almost fully
# or hold the same values; two independent draws of n values correlate by about 1/sqrt(n) (0.03 for the
# 1024 values of flux-tiny's latents). Between lies nothing a pipeline produces.
SAME_DRAW_CORRELATION = 0.9
INDEPENDENT_CORRELATION = 0.5
SORTED_RTOL = 2.0**-6  # bf16 keeps 8 bits: a reordered, re-rounded draw stays within this of the original


def _first_generator(desc: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if desc is not None and desc["type"] in ("list", "tuple") and desc["items"]:
        return desc["items"][0]
    return desc


def generator_problem(
    at_draw: Mapping[str, Any] | None, at_denoising: Mapping[str, Any] | None, seed: int
) -> str | None:
    """Why the port's generator cannot have drawn the case's seeded noise, or None when it can: the Req's
    generator when the stage that set the initial latents began (`at_draw`, with that stage's name), and
    when the denoising stage began."""
    stage = at_draw.get("stage", "the stage that set the latents") if at_draw else "the stage that set the latents"
    generator = _first_generator(at_draw.get("generator") if at_draw else None)
    if at_draw is not None and (generator is None or generator["type"] == "None"):
        return f"Req.generator was None when {stage}, the stage that set the initial latents, began"
    if generator is not None and generator["type"] == "Generator":
        if generator["global"]:
            return f"Req.generator was torch's process-global generator when {stage} drew the initial noise"
        if generator["initial_seed"] != seed:
            unseeded = (
                " (torch's default: the generator was never seeded)" if generator["initial_seed"] == UNSEEDED else ""
            )
            return (
                f"Req.generator was seeded with {generator['initial_seed']}{unseeded}, not the case's seed {seed}, "
                f"when {stage} drew the initial noise"
            )
    later = _first_generator(at_denoising)
    if later is None or later["type"] == "None":
        return "Req.generator is None at the denoising stage: the noise cannot come from a seeded generator"
    if later["type"] != "Generator":
        return f"Req.generator is {_what(later)} at the denoising stage, not a torch.Generator"
    if later["global"]:
        return "Req.generator is torch's process-global generator at the denoising stage, not the request's own"
    if later["initial_seed"] != seed:
        return (
            f"Req.generator is seeded with {later['initial_seed']} at the denoising stage, not the case's seed {seed}"
        )
    if not later["drawn"]:
        return f"Req.generator (seeded with {seed}) was never drawn from before the denoising stage"
    return None


def _noise_like(x: torch.Tensor) -> bool:
    std = float(x.std())
    return std > 0 and abs(float(x.mean())) <= 0.25 * std


def same_draw(reference: torch.Tensor, port: torch.Tensor) -> tuple[bool, str]:
    """Whether `port` holds the reference's draw (in any order, at any rounding), and the numbers that say so."""
    ref, out = reference.detach().double().flatten().cpu(), port.detach().double().flatten().cpu()
    if ref.numel() != out.numel():
        return True, f"not judged: {out.numel()} values vs the reference's {ref.numel()}"
    if torch.equal(ref, out):
        return True, "the reference's draw"
    correlation = float(torch.corrcoef(torch.stack([ref, out]))[0, 1]) if ref.numel() > 1 else 1.0
    scale = float(ref.abs().max()) or 1.0
    sorted_gap = float((ref.sort().values - out.sort().values).abs().max()) / scale
    numbers = f"correlation {correlation:.3g}, sorted values {sorted_gap:.3g} of the largest apart"
    if correlation >= SAME_DRAW_CORRELATION or sorted_gap <= SORTED_RTOL:
        return True, numbers
    comparable = _noise_like(ref) and _noise_like(out) and 0.5 <= float(out.std()) / float(ref.std()) <= 2.0
    if not comparable or abs(correlation) >= INDEPENDENT_CORRELATION:
        return True, f"not judged ({numbers}): not two draws of the same noise"
    return False, numbers


def seed_finding(
    reference: torch.Tensor | None,
    port: torch.Tensor | None,
    seed: int,
    at_draw: Mapping[str, Any] | None,
    at_denoising: Mapping[str, Any] | None,
) -> Finding | None:
    """`latents_seed`: the port's initial noise (canonical layout) reproduces from the case's seed the way
    the reference draws it, i.e. it is the reference's draw. It fails when the port's noise is an
    independent draw (uncorrelated, other values, both noise of the same scale) AND the port's generator
    cannot have made the seeded draw (None, torch's global one, another seed, never drawn from). A draw
    from a generator seeded as it should be that still differs (a later draw of it, another dtype) is not
    a seed problem: latent_preparation/latents reports it. None when a side recorded no initial latents."""
    if reference is None or port is None:
        return None
    rule = f"{SKILL['latents_seed']} ({seed}), as the reference draws it"
    drawn, numbers = same_draw(reference, port)
    if drawn:
        return Finding("latents_seed", True, rule)
    problem = generator_problem(at_draw, at_denoising, seed)
    if problem is None:
        return Finding("latents_seed", True, rule)
    message = (
        f"the port's initial noise is not the seeded draw the reference makes from seed {seed} but an "
        f"independent one ({numbers}): {problem}; the seed is not used"
    )
    return Finding("latents_seed", False, rule, message)


def checks(findings: list[Finding]) -> list[Check]:
    """The findings as checks of stage `contract`, in the order given."""
    return [finding.check(order) for order, finding in enumerate(findings)]


def section(view: Mapping[str, Any] | None, expected: Expected | None) -> dict[str, Any] | None:
    """report.json's `contract`: where the Req was observed, what it held, SGLang's verification failures
    and the warnings (the skill's rules the pinned code does not follow)."""
    if view is None or expected is None:
        return None
    return {
        "denoiser": view.get("denoiser"),
        "standard": bool(view.get("standard")),
        "fields": view.get("fields", {}),
        "generator_at_draw": view.get("at_draw"),
        "verification": list(view.get("verification", ())),
        "warnings": warnings(view, expected),
    }
