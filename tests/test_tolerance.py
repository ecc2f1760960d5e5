import math

import pytest

from parity import stages, tolerance
from parity.errors import ParityError
from parity.tolerance import CUDA_DEFAULTS, DEFAULTS, Policy, Tolerance, kind_of

# docs/tolerances.md: kind -> fp32 and bf16 (atol, rtol, rel_l2), "exact" for the bit-exact kinds.
DOCUMENTED = {
    "tokens": ("exact", "exact"),
    "initial_noise": ("exact", "exact"),
    "schedule": ((1e-6, 2.4e-7, None), (1e-6, 2.4e-7, None)),
    "embeddings": ((1e-4, 1e-5, 5e-5), (0.1, 0.02, 0.02)),
    "denoise_latents": ((1e-5, 1e-5, 5e-5), (0.1, 0.05, 0.02)),
    "dit_output": ((2e-5, 1e-5, 5e-5), (0.25, 0.05, 0.1)),
    "block_output": ((1e-4, 1e-5, 5e-5), (0.15, 0.05, 0.05)),
    "dit_conditioning": ((1e-6, 4.8e-7, None), (1e-6, 7.9e-3, None)),
    "time_embedding_input": ((1e-6, 4.8e-7, None), (1e-6, 4.8e-7, None)),
    "pixels": ((3e-5, 0.0, 5e-5), (0.15, 0.0, 0.04)),
}
KINDS = tuple(DOCUMENTED)
FLOAT_KINDS = [kind for kind, (f32, _) in DOCUMENTED.items() if f32 != "exact"]
# docs/tolerances.md, "GPU tolerances": the bf16 limits (atol, rel_l2) calibrated on the GPU; fp32 is the CPU's.
DOCUMENTED_CUDA_BF16 = {
    "embeddings": (0.1, 0.02),
    "denoise_latents": (0.15, 0.025),
    "dit_output": (0.25, 0.1),
    "block_output": (0.075, 0.03),
    "pixels": (0.15, 0.04),
}


def _limits(t: Tolerance):
    return "exact" if t.exact else (t.atol, t.rtol, t.rel_l2)


@pytest.mark.parametrize(
    ("stage", "tensor", "kind"),
    [
        (stages.TEXT_ENCODING, "input_ids.0", "tokens"),
        (stages.TEXT_ENCODING, "negative_attention_mask.1", "tokens"),
        (stages.TEXT_ENCODING, "prior_token_ids", "tokens"),
        (stages.TEXT_ENCODING, "prompt_embeds", "embeddings"),
        (stages.TEXT_ENCODING, "negative_pooled_prompt_embeds", "embeddings"),
        (stages.TEXT_ENCODING, "prompt_embeds.2", "embeddings"),
        (stages.LATENT_PREPARATION, "latents", "initial_noise"),
        (stages.TIMESTEP_PREPARATION, "sigmas", "schedule"),
        (stages.TIMESTEP_PREPARATION, "timesteps", "schedule"),
        (stages.DENOISING, "latents", "denoise_latents"),
        (stages.DENOISING, "dit_input", "denoise_latents"),
        (stages.DENOISING, "dit_timestep", "dit_conditioning"),
        (stages.DENOISING, "dit_guidance", "dit_conditioning"),
        (stages.DENOISING, "dit_time_embedding_input.0", "time_embedding_input"),
        (stages.DENOISING, "noise_pred", "dit_output"),
        (stages.DENOISING, "noise_pred_cond", "dit_output"),
        (stages.DENOISING, "noise_pred_uncond", "dit_output"),
        (stages.DENOISING, "hidden_states", "block_output"),
        (stages.DENOISING, "encoder_hidden_states", "block_output"),
        (stages.DECODING, "vae_input", "denoise_latents"),
        (stages.DECODING, "latents", "denoise_latents"),
        (stages.DECODING, "frames", "pixels"),
    ],
)
def test_every_canonical_tensor_has_a_kind(stage, tensor, kind):
    assert kind_of(stage, tensor) == kind


@pytest.mark.parametrize("device_table", [DEFAULTS, CUDA_DEFAULTS], ids=["cpu", "cuda"])
def test_every_dtype_defines_every_kind_and_ids_are_exact(device_table):
    assert set(device_table) == {"float32", "bfloat16"}
    for dtype, table in device_table.items():
        assert set(table) == set(KINDS), dtype
        assert table["tokens"].exact and table["initial_noise"].exact
        assert not any(table[kind].exact for kind in FLOAT_KINDS), dtype


@pytest.mark.parametrize("kind", KINDS)
def test_the_defaults_are_the_documented_values(kind):
    f32, b16 = DOCUMENTED[kind]
    assert _limits(DEFAULTS["float32"][kind]) == f32
    assert _limits(DEFAULTS["bfloat16"][kind]) == b16


def test_the_gpu_defaults_are_the_documented_values():
    assert CUDA_DEFAULTS["float32"] == DEFAULTS["float32"]
    for kind, (atol, rel_l2) in DOCUMENTED_CUDA_BF16.items():
        assert (CUDA_DEFAULTS["bfloat16"][kind].atol, CUDA_DEFAULTS["bfloat16"][kind].rel_l2) == (atol, rel_l2), kind


@pytest.mark.parametrize("table", [DEFAULTS, CUDA_DEFAULTS], ids=["cpu", "cuda"])
@pytest.mark.parametrize("kind", FLOAT_KINDS)
def test_bf16_is_looser_than_fp32(table, kind):
    f32, b16 = table["float32"][kind], table["bfloat16"][kind]
    assert b16.atol >= f32.atol and b16.rtol >= f32.rtol
    assert (f32.rel_l2 is None) == (b16.rel_l2 is None)
    if f32.rel_l2 is not None:
        assert b16.rel_l2 >= f32.rel_l2
    # timesteps and sigmas are float32 in a bf16 run too, and what a DiT embeds must be the same number
    # in any dtype: float32 rounding either way
    if kind in ("schedule", "time_embedding_input"):
        assert b16 == f32
    else:
        assert (b16.atol, b16.rtol, b16.rel_l2 or 0) != (f32.atol, f32.rtol, f32.rel_l2 or 0)


@pytest.mark.parametrize(
    ("tol", "text"),
    [
        (Tolerance(atol=1e-4, rtol=1e-5, rel_l2=5e-5), "atol=0.0001 rtol=1e-05 rel_l2<=5e-05"),
        (Tolerance(atol=0.25, rtol=0.0), "atol=0.25 rtol=0"),
        (Tolerance(atol=1.23456, rtol=2.4e-7, rel_l2=0.0), "atol=1.23 rtol=2.4e-07 rel_l2<=0"),
        (Tolerance(exact=True), "exact"),
        (Tolerance(exact=True, text="SSIM >= 0.999"), "SSIM >= 0.999"),
        (Tolerance(atol=1.0, text="not noise"), "not noise"),
    ],
)
def test_describe(tol, text):
    assert tol.describe() == text


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
    assert policy.for_tensor(stages.TEXT_ENCODING, "prompt_embeds").source == "case x float32/prompt_embeds"
    assert policy.for_tensor(stages.TEXT_ENCODING, "pooled_prompt_embeds").atol == 1.0
    assert policy.for_tensor(stages.TEXT_ENCODING, "pooled_prompt_embeds").source == "pyproject.toml embeddings"
    assert not policy.for_tensor(stages.DECODING, "frames").exact  # the bf16 layer does not apply
    assert policy.dtype == "float32"


def test_a_later_layer_replaces_an_earlier_one():
    policy = Policy("bfloat16", [("pyproject.toml", {"frames": {"atol": 1.0}}), ("case x", {"frames": "exact"})])
    frames = policy.for_tensor(stages.DECODING, "frames")
    assert frames.exact and frames.source == "case x frames"


def test_the_full_tensor_name_beats_its_base_name_which_beats_the_kind():
    policy = Policy(
        "float32",
        [("case x", {"embeddings": {"atol": 1.0}, "prompt_embeds": {"atol": 2.0}, "prompt_embeds.1": {"atol": 3.0}})],
    )
    assert policy.for_tensor(stages.TEXT_ENCODING, "prompt_embeds.1").atol == 3.0  # full name
    assert policy.for_tensor(stages.TEXT_ENCODING, "prompt_embeds.0").atol == 2.0  # base name
    assert policy.for_tensor(stages.TEXT_ENCODING, "prompt_embeds").atol == 2.0
    assert policy.for_tensor(stages.TEXT_ENCODING, "pooled_prompt_embeds.1").atol == 1.0  # kind
    # the same order whichever way the layer lists them
    reverse = Policy(
        "float32",
        [("case x", {"prompt_embeds.1": {"atol": 3.0}, "prompt_embeds": {"atol": 2.0}, "embeddings": {"atol": 1.0}})],
    )
    assert reverse.for_tensor(stages.TEXT_ENCODING, "prompt_embeds.1").atol == 3.0
    assert reverse.for_tensor(stages.TEXT_ENCODING, "prompt_embeds.0").atol == 2.0


def test_defaults_follow_the_tensors_kind_and_stage():
    policy = Policy("float32")
    assert policy.for_tensor(stages.LATENT_PREPARATION, "latents").exact
    assert policy.for_tensor(stages.DENOISING, "latents") == Tolerance(
        atol=1e-5, rtol=1e-5, rel_l2=5e-5, source="default float32/denoise_latents"
    )
    assert policy.for_tensor(stages.TEXT_ENCODING, "input_ids.1").source == "default float32/tokens"


def test_a_tolerance_entry_is_exact_or_a_table_of_numbers():
    def parsed(entry):
        return Policy("float32", [("case x", {"frames": entry})]).for_tensor(stages.DECODING, "frames")

    assert parsed("exact") == Tolerance(exact=True, source="case x frames")
    assert parsed({"rtol": 0.5}) == Tolerance(atol=0.0, rtol=0.5, rel_l2=None, source="case x frames")
    assert parsed({"atol": 2}) == Tolerance(atol=2.0, rtol=0.0, rel_l2=None, source="case x frames")
    both = parsed({"atol": 0.1, "rtol": 0.2, "rel_l2": 0.3})
    assert (both.atol, both.rtol, both.rel_l2, both.exact) == (0.1, 0.2, 0.3, False)
    assert isinstance(parsed({"atol": 2}).atol, float)


@pytest.mark.parametrize(
    "entry",
    [
        {"atol": "big"},
        {"tol": 1},
        {},
        3,
        "loose",
        "EXACT",
        {"atol": -1.0},
        {"rtol": math.nan},
        {"rel_l2": math.inf},
        {"atol": True},
        {"atol": None},
        ["atol", 1],
    ],
)
def test_bad_override_is_a_clear_error(entry):
    with pytest.raises(ParityError, match="frames"):
        Policy("float32", [("case x", {"frames": entry})])


def test_a_bad_entry_in_a_dtype_table_is_an_error_too():
    with pytest.raises(ParityError, match="bfloat16"):
        Policy("float32", [("case x", {"bfloat16": {"frames": {"atol": "big"}}})])
    with pytest.raises(ParityError, match="float32"):
        Policy("float32", [("case x", {"float32": "exact"})])


@pytest.mark.parametrize("key", ["embedings", "prompt_embed", "frame", "latent", "float16"])
def test_an_unknown_override_key_is_an_error(key):
    with pytest.raises(ParityError, match=key):
        Policy("float32", [("case x", {key: {"atol": 1.0}})])


@pytest.mark.parametrize(
    "key",
    [
        "embeddings",
        "frames",
        "negative_prompt_embeds.1",
        "input_ids.0",
        "negative_input_ids.1",
        "negative_attention_mask",
        "latents",
        "hidden_states",
        "my_embeds",
    ],
)
def test_kinds_and_canonical_tensor_names_are_override_keys(key):
    Policy("float32", [("case x", {key: {"atol": 1.0}, "bfloat16": {key: "exact"}})])  # no error


def test_unknown_dtype_is_rejected():
    with pytest.raises(ParityError, match="float16"):
        Policy("float16")


def test_gpu_runs_use_their_own_table_and_say_so():
    cpu, gpu = Policy("bfloat16"), Policy("bfloat16", device="cuda")
    assert gpu.for_tensor(stages.DENOISING, "hidden_states").source == "default cuda bfloat16/block_output"
    assert cpu.for_tensor(stages.DENOISING, "hidden_states").source == "default bfloat16/block_output"
    # Calibrated apart: the GPU's bf16 block limit is its own measurement, not the CPU's.
    assert gpu.for_tensor(stages.DENOISING, "hidden_states") != cpu.for_tensor(stages.DENOISING, "hidden_states")


def test_unknown_device_is_a_setup_error():
    with pytest.raises(ParityError, match="device"):
        Policy("float32", device="tpu")


def test_a_kind_without_a_tolerance_is_an_error_naming_tensor_and_kind(monkeypatch):
    table = {k: t for k, t in DEFAULTS["float32"].items() if k not in ("block_output", "initial_noise")}
    monkeypatch.setitem(tolerance.DEFAULTS_BY_DEVICE, "cpu", {**DEFAULTS, "float32": table})
    policy = Policy("float32")
    with pytest.raises(ParityError, match=r"no tolerance for 'hidden_states' \(kind 'block_output'\)"):
        policy.for_tensor(stages.DENOISING, "hidden_states")
    with pytest.raises(ParityError, match=r"no tolerance for 'latents' \(kind 'initial_noise'\)"):
        policy.for_tensor(stages.LATENT_PREPARATION, "latents")


def test_an_unknown_key_names_where_it_is_and_what_is_known():
    with pytest.raises(ParityError) as caught:
        Policy("float32", [("case x", {"embedings": {"atol": 1.0}})])
    message = str(caught.value)
    assert message.startswith("case x tolerance: unknown key 'embedings'")
    assert f"known kinds: {', '.join(DEFAULTS['float32'])};" in message
    assert "dtype tables: float32, bfloat16;" in message
    with pytest.raises(ParityError, match=r"^tolerance: unknown key 'frame'"):
        tolerance.check_overrides({"frame": {"atol": 1.0}})  # where a case file's [tolerance] table is checked
    with pytest.raises(ParityError, match=r"^case x tolerance\.bfloat16: unknown key 'frame'"):
        Policy("float32", [("case x", {"bfloat16": {"frame": "exact"}})])


def test_every_key_after_a_dtype_table_is_checked_too():
    with pytest.raises(ParityError, match="bogus"):
        Policy("float32", [("case x", {"bfloat16": {"frames": "exact"}, "bogus": {"atol": 1.0}})])


def test_zero_is_a_tolerance():
    frames = Policy("float32", [("case x", {"frames": {"atol": 0, "rtol": 0.0, "rel_l2": 0}})]).for_tensor(
        stages.DECODING, "frames"
    )
    assert (frames.atol, frames.rtol, frames.rel_l2) == (0.0, 0.0, 0.0)
