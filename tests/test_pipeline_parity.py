"""End to end on flux-tiny: the real Diffusers FluxPipeline against SGLang's native FluxPipeline.

Each run is a fresh process through the CLI (plugins patch SGLang globally, and exit codes are
part of the contract). Fault-injection plugins in tests/plugins/ break the port on purpose.
"""

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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_clean_port_passes_against_the_native_pipeline(tmp_path, dtype):
    proc, doc = parity_run(tmp_path, "--dtype", dtype)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert doc["verdict"] == "pass" and doc["first_divergence"] is None
    assert doc["pipelines"]["port"] == "sglang.multimodal_gen.runtime.pipelines.flux.FluxPipeline"
    assert doc["pipelines"]["reference"] == "diffusers.pipelines.flux.pipeline_flux.FluxPipeline"
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        assert doc["components"]["port"][name].startswith("sglang.multimodal_gen."), name
    compared = {(c["stage"], c["tensor"], c["step"]) for c in doc["checks"]}
    steps = doc["case"]["steps"]
    expected = {
        ("text_encoding", t, None)
        for t in (
            "input_ids.0",
            "attention_mask.0",
            "input_ids.1",
            "attention_mask.1",
            "prompt_embeds",
            "pooled_prompt_embeds",
        )
    }
    expected |= {
        ("latent_preparation", "latents", None),
        ("timestep_preparation", "timesteps", None),
        ("timestep_preparation", "sigmas", None),
        ("decoding", "vae_input", None),
        ("decoding", "frames", None),
    }
    expected |= {("denoising", t, s) for t in ("noise_pred", "latents") for s in range(steps)}
    assert compared == expected


def test_cfg_case_compares_negative_embeddings_and_both_branches(tmp_path):
    proc, doc = parity_run(tmp_path, case="flux-tiny-cfg")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    tensors = {c["tensor"] for c in doc["checks"]}
    assert {"negative_prompt_embeds", "negative_pooled_prompt_embeds", "negative_input_ids.1"} <= tensors
    assert {"noise_pred_cond", "noise_pred_uncond"} <= tensors and "noise_pred" not in tensors
    per_step = [c for c in doc["checks"] if c["tensor"] == "noise_pred_uncond"]
    assert [c["step"] for c in per_step] == list(range(doc["case"]["steps"]))


FAULTS = [
    ("fault_perturb_t5.py", "text_encoding", "prompt_embeds"),
    ("fault_transpose_latents.py", "latent_preparation", "latents"),
    ("fault_scale_sigmas.py", "timestep_preparation", "timesteps"),
    ("fault_dit_output.py", "denoising", "noise_pred"),
    ("fault_drop_vae_shift.py", "decoding", "vae_input"),
]


@pytest.mark.parametrize(("plugin", "stage", "tensor"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_in_the_port_is_caught_at_its_stage(tmp_path, plugin, stage, tensor):
    proc, doc = parity_run(tmp_path, "--plugin", str(PLUGINS / plugin))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert doc["verdict"] == "fail"
    assert doc["first_divergence"]["stage"] == stage
    assert doc["first_divergence"]["tensor"] == tensor
    assert "first divergence: stage=" + stage in proc.stdout


# In bf16 only faults above the bf16 noise floor are expected to show (README, "Tolerances").
BF16_FAULTS = [FAULTS[0], FAULTS[2], FAULTS[4]]


@pytest.mark.parametrize(("plugin", "stage", "tensor"), BF16_FAULTS, ids=[f[0] for f in BF16_FAULTS])
def test_fault_is_caught_in_bf16_too(tmp_path, plugin, stage, tensor):
    proc, doc = parity_run(tmp_path, "--dtype", "bfloat16", "--plugin", str(PLUGINS / plugin))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert doc["first_divergence"]["stage"] == stage and doc["first_divergence"]["tensor"] == tensor


def test_port_that_sglang_resolves_to_its_diffusers_backend_is_refused(tmp_path):
    proc, doc = parity_run(
        tmp_path, "--plugin", str(PLUGINS / "family_without_model_id.py"), "--family", "flux-no-model-id"
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("parity: error:")]
    assert len(errors) == 1 and "Diffusers backend" in errors[0] and "not its native FluxPipeline" in errors[0]
    assert doc["verdict"] == "error"
    assert doc["pipelines"]["reference"].endswith("FluxPipeline")  # the reference side had already run
