"""parity.contract on Req descriptions made from real torch objects (the runner hands over the same
plain data): the fields the standard DenoisingStage expects, SGLang's own verification failures, the
skill-vs-code warnings, the seed, and where a contract finding sits in the verdict and the reports."""

import numpy as np
import pytest
import torch

from parity import contract, files, hints, report, stages
from parity.align import Pair
from parity.compare import compare
from parity.results import Comparison, RunReport
from parity.tolerance import Policy
from parity.trace import Key
from parity.vocab import Mode, Role

SEED = 0
FLUX_ENCODERS = ["text_encoder", "text_encoder_2"]
PACKED = (1, 64, 16)  # flux-tiny's latents as the denoiser receives them: 8x8 tokens of 2x2x4 channels
UNPACKED = (1, 4, 16, 16)


def seeded(seed: int = SEED, drawn: bool = True) -> torch.Generator:
    generator = torch.Generator().manual_seed(seed)
    if drawn:
        torch.randn(4, generator=generator)
    return generator


def flux_req(**changes) -> dict:
    """A clean Flux Req as SGLang 0.5.23 hands it to its denoising router (what the runner observed)."""
    latents = torch.randn(PACKED, generator=seeded(drawn=False))
    fields = {
        "prompt_embeds": [torch.zeros(1, 32), torch.zeros(1, 512, 32)],
        "negative_prompt_embeds": [],
        "latents": latents,
        "timesteps": torch.tensor([1000.0, 750.0]),
        "num_inference_steps": 2,
        "sigmas": np.linspace(1.0, 0.5, 2),
        "generator": [seeded()],
        "raw_latent_shape": latents.shape,
        "height": 128,
        "width": 128,
        "do_classifier_free_guidance": False,
    }
    fields.update(changes)
    return {
        "denoiser": "ProgressiveDenoisingStageRouter",
        "standard": True,
        "text_encoders": FLUX_ENCODERS,
        "verification": [],
        "fields": {name: contract.describe(value) for name, value in fields.items()},
        "at_draw": {"stage": "LatentPreparationStage", "generator": contract.describe([seeded(drawn=False)])},
    }


EXPECTED = contract.Expected(prompt_embeds=2, seed=SEED, canonical_latents=UNPACKED)


def failing(view: dict, expected: contract.Expected = EXPECTED) -> dict[str, str]:
    return {f.field: f.message for f in contract.judge(view, expected) if not f.passed}


def test_describe_names_types_shapes_lengths_and_the_generators_seed_and_state():
    assert contract.describe(None) == {"type": "None"}
    assert contract.describe(torch.zeros(2, 3)) == {"type": "Tensor", "shape": [2, 3], "dtype": "float32"}
    assert contract.describe(np.zeros(4))["type"] == "ndarray"
    assert contract.describe(torch.Size((1, 64, 16))) == {"type": "Size", "value": [1, 64, 16]}
    assert contract.describe(7) == {"type": "int", "value": 7}
    listed = contract.describe([torch.zeros(1, 32)])
    assert (listed["type"], listed["length"], listed["items"][0]["shape"]) == ("list", 1, [1, 32])
    fresh, drawn = contract.describe(seeded(3, drawn=False)), contract.describe(seeded(3))
    assert (fresh["initial_seed"], fresh["drawn"], drawn["drawn"], fresh["global"]) == (3, False, True, False)
    assert contract.describe(torch.Generator())["initial_seed"] == contract.UNSEEDED
    assert contract.describe(torch.manual_seed(0))["global"] is True  # torch.manual_seed returns the global one


def test_a_clean_req_holds_every_rule_and_warns_where_the_skill_and_the_code_disagree():
    view = flux_req()
    findings = contract.judge(view, EXPECTED)
    assert [f.field for f in findings] == [
        "prompt_embeds",
        "latents",
        "timesteps",
        "num_inference_steps",
        "generator",
        "raw_latent_shape",
        "height",
        "width",
    ]
    assert all(f.passed for f in findings)
    sigmas, raw = contract.warnings(view, EXPECTED)
    assert sigmas.startswith("sigmas: Req.sigmas is an ndarray [2]") and "a Python list" in sigmas
    assert "not held against the port" in sigmas
    assert raw.startswith("raw_latent_shape: (1, 64, 16) is the packed latents' shape") and str(UNPACKED) in raw
    # an unpacked layout (SD3) packs nothing, and a list of sigmas is what the skill asks for: no warning
    canonical = flux_req(latents=torch.zeros(UNPACKED), raw_latent_shape=torch.Size(UNPACKED), sigmas=[1.0, 0.5])
    assert contract.warnings(canonical, EXPECTED) == []


def test_a_bare_tensor_for_prompt_embeds_is_named_with_the_skills_rule():
    found = failing(flux_req(prompt_embeds=torch.zeros(1, 512, 32)))
    assert list(found) == ["prompt_embeds"]
    assert found["prompt_embeds"].startswith("Req.prompt_embeds is a Tensor [1, 512, 32], not a list")
    assert "wrap it: [tensor]" in found["prompt_embeds"]
    mixed = failing(flux_req(prompt_embeds=[torch.zeros(1, 32), "text"]))
    assert "every item must be a tensor" in mixed["prompt_embeds"]


@pytest.mark.parametrize("generator", [None, [], [7], 7])
def test_a_generator_that_is_not_one_is_named(generator):
    found = failing(flux_req(generator=generator))
    assert list(found) == ["generator"] and found["generator"].startswith("Req.generator is ")
    assert "seeded from the request's seed" in found["generator"]


def test_one_encoders_embeddings_dropped_is_a_count_against_the_text_encoders():
    found = failing(flux_req(prompt_embeds=[torch.zeros(1, 512, 32)]))
    assert found == {
        "prompt_embeds": "Req.prompt_embeds holds 1 tensor where 2 are expected "
        "(one per text encoder: text_encoder, text_encoder_2)"
    }
    # under CFG the negative embeddings are held to the same count
    cfg = flux_req(do_classifier_free_guidance=True, negative_prompt_embeds=[torch.zeros(1, 32)])
    assert "holds 1 tensor where 2" in failing(cfg)["negative_prompt_embeds"]


def test_a_pipeline_that_merges_its_encoders_is_held_to_the_family_count_with_a_warning():
    view = flux_req(prompt_embeds=[torch.zeros(1, 333, 32)])
    view["text_encoders"] = ["text_encoder", "text_encoder_2", "text_encoder_3"]  # SD3 merges three into one
    merged = contract.Expected(prompt_embeds=1, seed=SEED, canonical_latents=UNPACKED)
    assert failing(view, merged) == {}
    [warning] = [w for w in contract.warnings(view, merged) if w.startswith("prompt_embeds")]
    assert "one tensor per text encoder (3 loaded" in warning and "held to the family's count" in warning


def test_raw_latent_shape_is_held_to_the_latents_the_denoiser_receives():
    before_packing = failing(flux_req(raw_latent_shape=torch.Size(UNPACKED)))["raw_latent_shape"]
    assert before_packing.startswith(
        "Req.raw_latent_shape is (1, 4, 16, 16) (the shape before packing, as the skill describes it) "
        "but Req.latents is (1, 64, 16)"
    )
    assert "DenoisingStage reads [0] as the batch size" in before_packing
    other = failing(flux_req(raw_latent_shape=torch.Size((2, 64, 16))))["raw_latent_shape"]
    assert "before packing" not in other and "(2, 64, 16)" in other
    unset = failing(flux_req(raw_latent_shape=None))["raw_latent_shape"]
    assert unset.startswith("Req.raw_latent_shape is None, not a tuple of ints")


def test_sglangs_verification_failure_replaces_the_harness_finding_on_that_field():
    view = flux_req(prompt_embeds=torch.zeros(1, 512, 32))
    view["verification"] = [
        {
            "stage": "TextEncodingStage",
            "check": "output",
            "fields": {"prompt_embeds": ["Validator 'list_of_tensors_min_dims' failed. Actual: Tensor"]},
        }
    ]
    found = failing(view)
    assert list(found) == ["prompt_embeds"]
    assert found["prompt_embeds"].startswith(
        "SGLang's TextEncodingStage.verify_output rejected Req.prompt_embeds (StageVerificationError): "
        "Validator 'list_of_tensors_min_dims' failed. Actual: Tensor; the skill: prompt_embeds is a list of tensors"
    )
    # a model-specific denoiser owns its contract: only SGLang's own verification is reported for it
    view["standard"] = False
    assert list(failing(view)) == ["prompt_embeds"]
    view["verification"] = []
    assert contract.judge(view, EXPECTED) == [] and contract.warnings(view, EXPECTED) == []


def noise(seed: int, shape=UNPACKED) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def seed_check(port: torch.Tensor, at_draw=None, at_denoising=None) -> contract.Finding:
    at_draw = at_draw or {"stage": "LatentPreparationStage", "generator": contract.describe([seeded(drawn=False)])}
    at_denoising = at_denoising or contract.describe([seeded()])
    finding = contract.seed_finding(noise(SEED), port, SEED, at_draw, at_denoising)
    assert finding is not None
    return finding


def test_the_reference_draw_reordered_or_rounded_reproduces_from_the_seed():
    reference = noise(SEED)
    assert seed_check(reference.clone()).passed
    assert seed_check(reference.transpose(-1, -2)).passed  # a packing bug: latent_preparation/latents says so
    assert seed_check(reference.bfloat16().float()).passed  # drawn in another dtype
    assert contract.seed_finding(None, reference, SEED, None, None) is None


def test_an_independent_draw_from_an_unseeded_generator_is_the_seed_not_used():
    unseeded = contract.describe([torch.Generator()])
    at_draw = {"stage": "LatentPreparationStage", "generator": unseeded}
    finding = seed_check(noise(1234), at_draw, unseeded)
    assert not finding.passed and finding.field == "latents_seed"
    assert finding.message.startswith("the port's initial noise is not the seeded draw the reference makes from seed 0")
    assert f"Req.generator was seeded with {contract.UNSEEDED} (torch's default: the generator was never seeded)" in (
        finding.message
    )
    assert finding.message.endswith("the seed is not used")


def test_no_generator_when_the_latents_were_drawn_is_the_qwen_image_layered_finding():
    at_draw = {"stage": "QwenImageLayeredBeforeDenoisingStage", "generator": {"type": "None"}}
    finding = seed_check(noise(99), at_draw, contract.describe(torch.manual_seed(0)))
    assert not finding.passed
    assert (
        "Req.generator was None when QwenImageLayeredBeforeDenoisingStage, the stage that set the initial latents"
        in (finding.message)
    )


def test_a_seeded_generators_later_draw_is_not_a_seed_problem():
    # Helios: the seeded generator draws twice and the chunked denoiser uses the second draw; the seed is
    # used, the draw differs: left to latent_preparation/latents
    assert seed_check(noise(777)).passed
    # ... but a seeded generator that was never drawn from did not make the noise
    never = seed_check(noise(777), at_denoising=contract.describe([seeded(drawn=False)]))
    assert not never.passed and "was never drawn from before the denoising stage" in never.message


def test_latents_that_are_not_noise_of_the_same_scale_are_not_judged_as_a_seed_question():
    unseeded = contract.describe([torch.Generator()])
    at_draw = {"stage": "LatentPreparationStage", "generator": unseeded}
    assert seed_check(torch.zeros(UNPACKED), at_draw, unseeded).passed
    assert seed_check(noise(5) * 10, at_draw, unseeded).passed
    assert seed_check(noise(5, (1, 4, 8, 8)), at_draw, unseeded).passed  # other size: the shape check's


@pytest.mark.parametrize("isolated", [False, True])
def test_a_contract_finding_is_the_first_divergence_and_feeds_every_later_failure(isolated):
    ref = torch.ones(3)
    pairs = [
        Pair(Key("prompt_embeds"), stages.TEXT_ENCODING, ref, ref * 2),
        Pair(Key("latents"), stages.LATENT_PREPARATION, ref, ref * 2),
    ]
    found = contract.checks([contract.Finding("latents_seed", False, "seeded", "the seed is not used")])
    checks = tuple(compare(pairs, Policy("float32")) + found)
    comparison = Comparison.judge(Mode.ISOLATED if isolated else Mode.FULL, checks)
    verdict = comparison.verdict
    assert verdict.first_divergence == {"stage": "contract", "tensor": "latents_seed", "step": None, "block": None}
    roles = [verdict.role(c) for c in sorted(checks, key=lambda c: c.execution_key())]
    assert roles == [Role.CAUSE, *([Role.CAUSE] * 2 if isolated else [Role.DOWNSTREAM] * 2)]
    assert verdict.exit_code == 1
    [hint, *_] = hints.for_causes(verdict.causes, list(checks))
    assert hint["at"] == "contract/latents_seed" and "does not reproduce from the case's seed" in hint["symptom"]
    assert "without InputValidationStage" in hint["likely_cause"]


def test_report_json_and_md_carry_the_contract_checks_section_and_warnings():
    view = flux_req(raw_latent_shape=torch.Size(UNPACKED))
    findings = contract.judge(view, EXPECTED)
    main = Comparison.judge(Mode.FULL, tuple(contract.checks(findings)))
    run = RunReport(Mode.FULL, {"name": "t"}, main, main.verdict, main, contract=contract.section(view, EXPECTED))
    doc = files.json_safe(run.as_json())
    assert doc["first_divergence"]["tensor"] == "raw_latent_shape"
    rows = {r["tensor"]: r for r in doc["checks"]}
    assert rows["raw_latent_shape"]["passed"] is False and "before packing" in rows["raw_latent_shape"]["message"]
    assert rows["prompt_embeds"]["passed"] is True and rows["prompt_embeds"]["stage"] == "contract"
    section = doc["contract"]
    assert section["denoiser"] == "ProgressiveDenoisingStageRouter" and section["standard"] is True
    assert section["fields"]["prompt_embeds"]["length"] == 2
    assert [w.split(":")[0] for w in section["warnings"]] == ["sigmas"]  # raw_latent_shape is not packed here
    md = report.markdown(doc)
    line = next(line for line in md.splitlines() if line.startswith("Req contract"))
    assert line.startswith(
        "Req contract (observed entering `ProgressiveDenoisingStageRouter`): 7 of 8 checks hold "
        "(failed: raw_latent_shape). ⚠ sigmas: Req.sigmas is an ndarray [2]"
    )
