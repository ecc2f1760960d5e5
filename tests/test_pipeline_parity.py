"""End to end on flux-tiny: the real Diffusers FluxPipeline against SGLang's native FluxPipeline.

Each run is a fresh process through the CLI (plugins patch SGLang globally, and exit codes are
part of the contract). Fault-injection plugins in tests/plugins/ break the port on purpose.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline
PLUGINS = Path(__file__).parent / "plugins"


def parity_run(tmp_path, *args, case="flux-tiny"):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "parity", "run", case, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = out / "report.json"
    doc = json.loads(report.read_text()) if report.is_file() else None
    return proc, doc


# flux-tiny in bf16 diverges for real (below): the clean bf16 run is the port with its timestep rounded
# the way Diffusers rounds it, which tests/plugins/confirm_flux_timestep_bf16.py does.
ROUNDED_TIMESTEP = ("--plugin", str(PLUGINS / "confirm_flux_timestep_bf16.py"))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_clean_port_passes_against_the_native_pipeline_in_both_modes(tmp_path, dtype):
    rounded = ROUNDED_TIMESTEP if dtype == "bfloat16" else ()
    proc, doc = parity_run(tmp_path, "--dtype", dtype, "--mode", "both", *rounded)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert doc["verdict"] == "pass" and doc["first_divergence"] is None
    assert doc["isolated"]["verdict"] == "pass"
    assert "isolated components: PASS" in proc.stdout.splitlines()[0]  # the console line says it too
    components = [row["component"] for row in doc["isolated"]["components"]]
    assert {"text encoders", "DiT", "DiT block transformer_blocks.1", "scheduler step"} <= set(components)
    assert doc["pipelines"]["port"] == "sglang.multimodal_gen.runtime.pipelines.flux.FluxPipeline"
    assert doc["pipelines"]["reference"] == "diffusers.pipelines.flux.pipeline_flux.FluxPipeline"
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        assert doc["components"]["port"][name].startswith("sglang.multimodal_gen."), name
    compared = {(c["stage"], c["tensor"], c["step"], c["block"]) for c in doc["checks"]}
    steps = doc["case"]["steps"]
    expected = {
        ("text_encoding", t, None, None)
        for t in (
            "input_ids.0",
            "attention_mask.0",
            "input_ids.1",
            "attention_mask.1",
            "prompt_embeds",
            "pooled_prompt_embeds",
        )
    }
    # the Req contract of Flux's denoising router (no CFG here: no negative_prompt_embeds)
    contract = ("prompt_embeds", "latents", "timesteps", "num_inference_steps", "generator", "raw_latent_shape")
    expected |= {("contract", f, None, None) for f in (*contract, "height", "width", "latents_seed")}
    expected |= {
        ("latent_preparation", "latents", None, None),
        ("timestep_preparation", "timesteps", None, None),
        ("timestep_preparation", "sigmas", None, None),
        ("decoding", "vae_input", None, None),
        ("decoding", "frames", None, None),
        ("decoding", "frames_similarity", None, None),
        ("decoding", "frames_noise", None, None),
    }
    per_step = ("dit_input", "dit_timestep", "dit_guidance", "noise_pred", "latents")
    per_step += ("dit_time_embedding_input.0", "dit_time_embedding_input.1")  # the timestep, the guidance
    expected |= {("denoising", t, s, None) for t in per_step for s in range(steps)}
    blocks = (
        ["embedders"]
        + [f"transformer_blocks.{i}" for i in range(2)]
        + [f"single_transformer_blocks.{i}" for i in range(2)]
    )
    expected |= {
        ("denoising", t, s, b)
        for t in ("hidden_states", "encoder_hidden_states")
        for s in (0, steps - 1)
        for b in blocks
    }
    assert compared == expected
    assert doc["capture"]["block_steps"] == [0, steps - 1]
    assert doc["noise"]["verdict"] == "ok" and doc["noise"]["port"][0]["score"] < 0.5
    assert (tmp_path / "report" / "port.png").is_file() and (tmp_path / "report" / "reference.png").is_file()
    order = [c["step"] if c["step"] is not None else -1 for c in doc["checks"] if c["stage"] == "denoising"]
    assert order == sorted(order)  # checks are listed in execution order


@pytest.mark.parametrize("policy", ["default", "all"])
def test_bf16_flux_embeds_another_timestep_whatever_the_capture_policy(tmp_path, policy):
    """Diffusers' Flux rounds t to bf16 before embedding it, SGLang's does not: the first divergence is
    the DiT's time embedding input at the first step whose t is not a bf16 number (step 1; t = 1000 is),
    with every block of every step captured or not; the confirming plugin turns it green (above)."""
    proc, doc = parity_run(tmp_path, "--dtype", "bfloat16", "--block-steps", policy)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    where = {"stage": "denoising", "tensor": "dit_time_embedding_input.0", "step": 1, "block": None}
    assert doc["first_divergence"] == where
    [hint] = [h for h in doc["hints"] if "time_embedding" in h["at"]]
    assert "the reference rounds it to bfloat16" in hint["likely_cause"]
    guidance = [c for c in doc["checks"] if c["tensor"] == "dit_time_embedding_input.1"]
    assert guidance and all(c["passed"] for c in guidance)  # both embed 3504 for guidance 3.5


def test_cfg_case_compares_negative_embeddings_and_both_branches(tmp_path):
    proc, doc = parity_run(tmp_path, case="flux-tiny-cfg")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    tensors = {c["tensor"] for c in doc["checks"]}
    assert {"negative_prompt_embeds", "negative_pooled_prompt_embeds", "negative_input_ids.1"} <= tensors
    assert {"noise_pred_cond", "noise_pred_uncond", "noise_pred"} <= tensors  # both branches and the guided one
    per_step = [c for c in doc["checks"] if c["tensor"] == "noise_pred_uncond"]
    assert [c["step"] for c in per_step] == list(range(doc["case"]["steps"]))


def test_sd3_three_encoders_and_batched_cfg_pass_in_both_modes(tmp_path):
    proc, doc = parity_run(tmp_path, "--mode", "both", case="sd3-tiny")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert doc["pipelines"]["port"].endswith("stable_diffusion_3.StableDiffusion3Pipeline")
    tensors = {c["tensor"] for c in doc["checks"]}
    assert {"input_ids.2", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"} <= tensors
    assert {"noise_pred_cond", "noise_pred_uncond"} <= tensors  # Diffusers' batched CFG call, split
    assert doc["isolated"]["verdict"] == "pass"


# wan-t2v-tiny diverges for real at its schedule in fp32 (fixtures/cases/wan-t2v-tiny.toml): a Wan fault
# plugin runs after the plugin that sets SGLang's Wan schedule the way Diffusers does, so it is the only fault.
WAN = "confirm_wan_diffusers_schedule.py"

# plugin (or plugins, loaded in order), case, first_divergence (stage, tensor, step, block), words the hint must contain
FAULTS = [
    ("fault_perturb_t5.py", "flux-tiny", ("text_encoding", "prompt_embeds", None, None), "scaled copy"),
    ("fault_transpose_latents.py", "flux-tiny", ("latent_preparation", "latents", None, None), "another order"),
    ("fault_scale_sigmas.py", "flux-tiny", ("timestep_preparation", "timesteps", None, None), "constant factor"),
    ("fault_timesteps_x1000.py", "flux-tiny", ("denoising", "dit_timestep", 0, None), "x1000"),
    ("fault_rope_positions.py", "flux-tiny", ("denoising", "encoder_hidden_states", 0, "transformer_blocks.0"), "RoPE"),
    (
        "fault_block1_late_steps.py",
        "flux-tiny",
        ("denoising", "hidden_states", 2, "transformer_blocks.1"),
        "block transformer_blocks.1 itself",
    ),
    ("fault_dit_output.py", "flux-tiny", ("denoising", "noise_pred", 0, None), "scaled copy (x1.02)"),
    ("fault_cfg_formula.py", "flux-tiny-cfg", ("denoising", "noise_pred", 0, None), "guidance formula"),
    ("fault_drop_vae_shift.py", "flux-tiny", ("decoding", "vae_input", None, None), "shift_factor"),
    # the DiT's output differs behind matching blocks (its final norm, proj_out, unpatchify)
    (
        "fault_qwen_norm_out_order.py",
        "qwen-image-tiny",
        ("denoising", "noise_pred_cond", 0, None),
        "what runs after the last block (transformer_blocks.1)",
    ),
    (
        (WAN, "fault_wan_unpatchify_order.py"),
        "wan-t2v-tiny",
        ("denoising", "noise_pred_cond", 0, None),
        "unpatchify's axis order",
    ),
    # only one CFG branch differs
    (
        "fault_qwen_negative_padded.py",
        "qwen-image-tiny",
        ("denoising", "noise_pred_uncond", 0, None),
        "negative_prompt_embeds match at text encoding",
    ),
    (
        (WAN, "fault_wan_negative_unpadded.py"),
        "wan-t2v-tiny",
        ("denoising", "noise_pred_uncond", 0, None),
        "the negative branch's inputs",
    ),
    # prompt embeddings cut at another token window
    ("fault_qwen_drop_idx.py", "qwen-image-tiny", ("text_encoding", "prompt_embeds", None, None), "drop_idx off by 1"),
    (
        (WAN, "fault_wan_text_unpadded.py"),
        "wan-t2v-tiny",
        ("text_encoding", "prompt_embeds", None, None),
        "padding dropped",
    ),
    # the decoder input is a per-channel affine map of the reference's
    (
        "fault_qwen_latents_mean_std_swapped.py",
        "qwen-image-tiny",
        ("decoding", "vae_input", None, None),
        "latents_mean / latents_std swapped",
    ),
    (
        (WAN, "fault_wan_latents_std_inverted.py"),
        "wan-t2v-tiny",
        ("decoding", "vae_input", None, None),
        "latents_std inverted",
    ),
]


def _plugin_args(plugin: str | tuple[str, ...]) -> list[str]:
    return [
        arg for name in ((plugin,) if isinstance(plugin, str) else plugin) for arg in ("--plugin", str(PLUGINS / name))
    ]


def _fault_id(plugin: str | tuple[str, ...]) -> str:
    return plugin if isinstance(plugin, str) else plugin[-1]


@pytest.mark.parametrize(("plugin", "case", "where", "hint"), FAULTS, ids=[_fault_id(f[0]) for f in FAULTS])
def test_fault_in_the_port_is_localized_with_a_hint(tmp_path, plugin, case, where, hint):
    proc, doc = parity_run(tmp_path, *_plugin_args(plugin), case=case)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert doc["verdict"] == "fail"
    assert doc["first_divergence"] == dict(zip(("stage", "tensor", "step", "block"), where, strict=True))
    assert "first divergence: stage=" + where[0] in proc.stdout
    if hint is not None:
        assert any(hint in h["likely_cause"] for h in doc["hints"]), doc["hints"]
    downstream = [c for c in doc["checks"] if c["role"] == "downstream"]
    assert downstream and all(not c["passed"] for c in downstream)


# Req contract faults (tests/plugins/fault_contract_*.py): field, words of its check's message, words of a note
CONTRACT_FAULTS = [
    (
        "fault_contract_bare_prompt_embeds.py",
        "prompt_embeds",
        "SGLang's TextEncodingStage.verify_output rejected Req.prompt_embeds (StageVerificationError)",
        "the port stopped after breaking its Req contract: SGLang (port) failed: StageVerificationError",
    ),
    (
        "fault_contract_drop_encoder_embeds.py",
        "prompt_embeds",
        "Req.prompt_embeds holds 1 tensor where 2 are expected (one per text encoder: text_encoder, text_encoder_2)",
        "the port stopped after breaking its Req contract: SGLang (port) failed: IndexError",
    ),
    (
        "fault_contract_unseeded_generator.py",
        "latents_seed",
        "Req.generator was seeded with 67280421310721 (torch's default: the generator was never seeded), not the "
        "case's seed 0, when LatentPreparationStage drew the initial noise; the seed is not used",
        None,
    ),
    (
        "fault_contract_raw_latent_shape.py",
        "raw_latent_shape",
        "Req.raw_latent_shape is (1, 4, 16, 16) (the shape before packing, as the skill describes it) but "
        "Req.latents is (1, 64, 16)",
        None,
    ),
]


@pytest.mark.parametrize(("plugin", "field", "message", "note"), CONTRACT_FAULTS, ids=[f[0] for f in CONTRACT_FAULTS])
def test_a_broken_req_contract_is_the_first_divergence_with_the_field_and_the_rule(
    tmp_path, plugin, field, message, note
):
    """A port that breaks the Req contract fails at stage `contract` (exit 1), named by the field, before any
    tensor it explains; one that stops on it (SGLang's StageVerificationError, or a crash the field causes
    deeper in) is a failure too, not a setup error."""
    proc, doc = parity_run(tmp_path, "--plugin", str(PLUGINS / plugin))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert doc["verdict"] == "fail" and doc["error"] is None
    assert doc["first_divergence"] == {"stage": "contract", "tensor": field, "step": None, "block": None}
    [row] = [c for c in doc["checks"] if c["stage"] == "contract" and not c["passed"]]
    assert row["tensor"] == field and message in row["message"] and row["role"] == "cause"
    assert f"first divergence: stage=contract, tensor={field}" in proc.stdout.splitlines()[0]
    assert any(h["at"] == f"contract/{field}" for h in doc["hints"])
    stopped = [n for n in doc["notes"] if n.startswith("the port stopped")]
    assert len(stopped) == (note is not None) and all(n.startswith(note) for n in stopped), doc["notes"]
    # every failure after the contract's is downstream of it
    assert all(c["role"] == "downstream" for c in doc["checks"] if not c["passed"] and c is not row)


# In bf16 only faults above the bf16 noise floor are expected to show (docs/tolerances.md).
BF16_FAULTS = [FAULTS[i] for i in (0, 1, 2, 3, 8)]


@pytest.mark.parametrize(("plugin", "case", "where", "hint"), BF16_FAULTS, ids=[f[0] for f in BF16_FAULTS])
def test_fault_is_caught_in_bf16_too(tmp_path, plugin, case, where, hint):
    plugins = (*ROUNDED_TIMESTEP, "--plugin", str(PLUGINS / plugin))  # the fault is then the only divergence
    proc, doc = parity_run(tmp_path, "--dtype", "bfloat16", *plugins, case=case)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert doc["first_divergence"] == dict(zip(("stage", "tensor", "step", "block"), where, strict=True))


@pytest.mark.parametrize(
    ("plugin", "failing"),
    [
        ("fault_block1_late_steps.py", {"DiT block transformer_blocks.1", "DiT"}),
        ("fault_perturb_t5.py", {"text encoders"}),
        ("fault_drop_vae_shift.py", {"decode de-normalization (scale, shift, unpack)"}),
    ],
)
def test_isolated_mode_blames_only_the_broken_component(tmp_path, plugin, failing):
    proc, doc = parity_run(tmp_path, "--mode", "isolated", "--plugin", str(PLUGINS / plugin))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert {row["component"] for row in doc["isolated"]["components"] if not row["passed"]} == failing
    assert all(c["role"] == "cause" for c in doc["checks"] if not c["passed"])  # no drift: every failure is its own


def test_fp64_referee_passes_bf16_noise_and_keeps_a_real_fault(tmp_path):
    tight = str(Path(__file__).parent / "cases" / "flux-tiny-tight-bf16.toml")
    proc, doc = parity_run(tmp_path, "--referee", "fp64", *ROUNDED_TIMESTEP, case=tight)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    judged = doc["referee"]
    assert judged["equivalent"] and judged["tensor"] == "noise_pred" and judged["step"] == 0
    assert judged["port_error"] <= 2 * judged["reference_error"]
    assert {c["status"] for c in doc["checks"] if c["tensor"] == "noise_pred"} == {"referee_equivalent"}

    proc, doc = parity_run(tmp_path, "--referee", "fp64", "--plugin", str(PLUGINS / "fault_dit_output.py"))
    assert proc.returncode == 1
    judged = doc["referee"]
    assert not judged["equivalent"] and judged["closer"] == "reference"
    assert judged["port_fp64_vs_reference_fp64"] > 0.01  # wrong in fp64 too: logic, not precision


def test_port_frames_replaced_by_noise_fail_with_the_noise_reason(tmp_path):
    proc, doc = parity_run(tmp_path, "--plugin", str(PLUGINS / "fault_noise_frames.py"))
    assert proc.returncode == 1
    assert doc["noise"]["verdict"] == "noise" and doc["noise"]["port"][0]["score"] > 0.9
    assert doc["noise"]["reference"][0]["flagged"] is False
    noise_check = next(c for c in doc["checks"] if c["tensor"] == "frames_noise")
    assert not noise_check["passed"] and "look like noise" in noise_check["message"]
    assert any("look like noise" in h["symptom"] for h in doc["hints"])
    assert "decoded frames: NOISE" in proc.stdout


def test_vae_fed_unscaled_latents_fails_at_the_decoder_input(tmp_path):
    proc, doc = parity_run(tmp_path, "--plugin", str(PLUGINS / "fault_vae_unscaled_latents.py"))
    assert proc.returncode == 1
    assert doc["first_divergence"]["tensor"] == "vae_input"
    similarity = next(c for c in doc["checks"] if c["tensor"] == "frames_similarity")
    assert not similarity["passed"]


def test_port_that_sglang_resolves_to_its_diffusers_backend_is_refused(tmp_path):
    proc, doc = parity_run(
        tmp_path, "--plugin", str(PLUGINS / "family_without_model_id.py"), "--family", "flux-no-model-id"
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("parity: error:")]
    assert len(errors) == 1 and "Diffusers backend" in errors[0] and "not its native FluxPipeline" in errors[0]
    assert doc["verdict"] == "error"
    assert doc["pipelines"]["reference"].endswith("FluxPipeline")  # the reference side had already run


def test_qwen_image_runs_sglangs_own_text_encoder_on_native_ops_and_passes(tmp_path):
    proc, doc = parity_run(tmp_path, case="qwen-image-tiny")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert doc["components"]["port"]["text_encoder"].startswith("sglang.multimodal_gen.")  # not transformers'
    assert doc["port_ops"]["mode"] == "native" and doc["port_ops"]["attention_backend"] == "torch_sdpa"
    rerouted = "\n".join(doc["port_ops"]["rerouted"])
    assert "-> forward_native" in rerouted and "fallback_torch" in rerouted


def test_port_ops_both_runs_the_port_on_its_kernels_and_on_its_native_ops(tmp_path):
    proc, doc = parity_run(tmp_path, "--port-ops", "both")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    both = doc["port_ops_both"]
    assert (both["kernels"], both["native"]) == ("pass", "pass")
    assert doc["port_ops"]["mode"] == "kernels"  # the main verdict is the port as it ships


def test_a_real_divergence_between_the_releases_is_reported_where_it_starts(tmp_path):
    # Z-Image: the two libraries build different timestep schedules (fixtures/cases/zimage-tiny.toml).
    proc, doc = parity_run(tmp_path, "--mode", "both", case="zimage-tiny")
    assert proc.returncode == 1
    assert doc["first_divergence"]["stage"] == "timestep_preparation"
    failing = {row["component"] for row in doc["isolated"]["components"] if not row["passed"]}
    assert failing == {"timestep preparation"}  # teacher-forced, every other component matches


def test_the_zimage_divergence_is_the_schedule_alone(tmp_path):
    # tests/plugins/confirm_zimage_schedule.py gives SGLang's Z-Image config Diffusers' sigmas: then it passes.
    plugin = ("--plugin", str(PLUGINS / "confirm_zimage_schedule.py"))
    proc, doc = parity_run(tmp_path, "--mode", "both", *plugin, case="zimage-tiny")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert doc["verdict"] == "pass" and doc["isolated"]["verdict"] == "pass"
    timesteps = next(c for c in doc["checks"] if (c["stage"], c["tensor"]) == ("timestep_preparation", "timesteps"))
    assert timesteps["max_abs"] == 0  # the same schedule, its last step at t = 0


def test_mode_both_that_fails_only_in_the_isolated_run_reports_that_run_whole(tmp_path):
    # The port's first request (the full run) is clean, its second (the isolated run) is not.
    proc, doc = parity_run(tmp_path, "--mode", "both", "--plugin", str(PLUGINS / "fault_state_across_requests.py"))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert doc["verdict"] == "fail" and doc["decided_by"] == "isolated"
    assert all(c["passed"] for c in doc["checks"])  # report.json's `checks` are the full run's
    where = {"stage": "denoising", "tensor": "noise_pred", "step": 0, "block": None}
    assert doc["first_divergence"] == where
    causes = [{k: r[k] for k in where} for r in doc["isolated"]["checks"] if r["role"] == "cause"]
    assert causes == doc["causes"] and causes[0] == where
    first_line = proc.stdout.splitlines()[0]
    assert "in the isolated run" in first_line and "isolated components: FAIL" in first_line


def test_port_ops_both_in_isolated_mode_judges_both_op_modes_teacher_forced(tmp_path):
    proc, doc = parity_run(
        tmp_path, "--mode", "isolated", "--port-ops", "both", "--plugin", str(PLUGINS / "fault_dit_output.py")
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    both = doc["port_ops_both"]
    assert both["mode"] == "isolated" and (both["kernels"], both["native"]) == ("fail", "fail")
    # Teacher-forced, the DiT's output at every step is a cause of its own: rows, CSV and causes agree.
    where = ("stage", "tensor", "step", "block")
    causes = [{k: r[k] for k in where} for r in doc["checks"] if r["role"] == "cause"]
    assert causes == doc["causes"] and len(causes) == doc["case"]["steps"]
    assert not [r for r in doc["checks"] if r["role"] == "downstream"]
    with open(tmp_path / "report" / "checks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # checks.csv writes the step column as floats (it holds empty cells for stepless checks)
    assert [(r["tensor"], float(r["step"])) for r in rows if r["role"] == "cause"] == [
        (c["tensor"], c["step"]) for c in causes
    ]
