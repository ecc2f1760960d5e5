import pytest

from parity import stages
from parity.errors import ParityError
from parity.tolerance import DEFAULTS, KINDS, Policy, kind_of


@pytest.mark.parametrize(
    ("stage", "tensor", "kind"),
    [
        (stages.TEXT_ENCODING, "input_ids.0", "tokens"),
        (stages.TEXT_ENCODING, "negative_attention_mask.1", "tokens"),
        (stages.TEXT_ENCODING, "prompt_embeds", "embeddings"),
        (stages.TEXT_ENCODING, "negative_pooled_prompt_embeds", "embeddings"),
        (stages.LATENT_PREPARATION, "latents", "initial_noise"),
        (stages.TIMESTEP_PREPARATION, "sigmas", "schedule"),
        (stages.DENOISING, "latents", "denoise_latents"),
        (stages.DENOISING, "noise_pred", "dit_output"),
        (stages.DECODING, "vae_input", "denoise_latents"),
        (stages.DECODING, "frames", "pixels"),
    ],
)
def test_every_canonical_tensor_has_a_kind(stage, tensor, kind):
    assert kind_of(stage, tensor) == kind


def test_every_dtype_defines_every_kind_and_ids_are_exact():
    for dtype, table in DEFAULTS.items():
        assert set(table) == set(KINDS), dtype
        assert table["tokens"].exact and table["initial_noise"].exact


def test_bf16_is_never_stricter_than_fp32():
    for kind in KINDS:
        f32, b16 = DEFAULTS["float32"][kind], DEFAULTS["bfloat16"][kind]
        assert b16.atol >= f32.atol and b16.rtol >= f32.rtol


def test_overrides_layer_in_order_and_tensor_names_beat_kinds():
    policy = Policy(
        "float32",
        [
            ("pyproject.toml", {"embeddings": {"atol": 1.0}}),
            ("case x", {"float32": {"prompt_embeds": {"atol": 2.0, "rel_l2": 0.5}}, "bfloat16": {"frames": "exact"}}),
        ],
    )
    assert policy.for_tensor(stages.TEXT_ENCODING, "prompt_embeds").atol == 2.0
    assert policy.for_tensor(stages.TEXT_ENCODING, "prompt_embeds").rel_l2 == 0.5
    assert policy.for_tensor(stages.TEXT_ENCODING, "pooled_prompt_embeds").atol == 1.0
    assert policy.for_tensor(stages.TEXT_ENCODING, "pooled_prompt_embeds").source == "pyproject.toml embeddings"
    assert not policy.for_tensor(stages.DECODING, "frames").exact  # the bf16 layer does not apply


@pytest.mark.parametrize("entry", [{"atol": "big"}, {"tol": 1}, {}, 3])
def test_bad_override_is_a_clear_error(entry):
    with pytest.raises(ParityError, match="frames"):
        Policy("float32", [("case x", {"frames": entry})])


def test_unknown_dtype_is_rejected():
    with pytest.raises(ParityError, match="float16"):
        Policy("float16")


def test_gpu_runs_use_their_own_table_and_say_so():
    from parity.tolerance import CUDA_DEFAULTS

    for dtype, table in CUDA_DEFAULTS.items():
        assert set(table) == set(KINDS), dtype
        assert table["tokens"].exact and table["initial_noise"].exact
    cpu, gpu = Policy("bfloat16"), Policy("bfloat16", device="cuda")
    assert gpu.for_tensor(stages.DENOISING, "hidden_states").source == "default cuda bfloat16/block_output"
    assert cpu.for_tensor(stages.DENOISING, "hidden_states").source == "default bfloat16/block_output"
    # Calibrated apart: the GPU's bf16 block limit is its own measurement, not the CPU's.
    assert gpu.for_tensor(stages.DENOISING, "hidden_states") != cpu.for_tensor(stages.DENOISING, "hidden_states")


def test_unknown_device_is_a_setup_error():
    with pytest.raises(ParityError, match="device"):
        Policy("float32", device="tpu")
