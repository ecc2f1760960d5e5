"""Pure helpers around the runs: tolerance margins from reports, input images, the suite's plan."""

import json

import numpy as np
import pytest

from parity import images, margins, suite
from parity.cases import Case
from parity.errors import ParityError


def _check(tensor, min_atol, rel_l2, atol=1e-4, step=None, block=None):
    return {
        "stage": "denoising",
        "tensor": tensor,
        "step": step,
        "block": block,
        "atol": atol,
        "max_rel_l2": 5e-5,
        "min_atol": min_atol,
        "rel_l2": rel_l2,
    }


def test_margins_take_the_worst_check_per_device_dtype_and_kind(tmp_path):
    doc = {
        "case": {"device": "cuda", "dtype": "float32"},
        "checks": [
            _check("hidden_states", 1e-6, 2e-7, step=0, block="transformer_blocks.0"),
            _check("hidden_states", 3e-6, 1e-7, step=3, block="transformer_blocks.1"),
            _check("noise_pred", 2e-6, 9e-7, step=1),
            {"stage": "text_encoding", "tensor": "input_ids.0", "atol": None, "min_atol": None},
        ],
    }
    (tmp_path / "report.json").write_text(json.dumps(doc))
    rows = {r["kind"]: r for r in margins.summarise([tmp_path])}
    assert set(rows) == {"block_output", "dit_output"}  # exact kinds carry no atol to calibrate
    blocks = rows["block_output"]
    assert blocks["checks"] == 2 and blocks["min_atol"] == 3e-6 and blocks["rel_l2"] == 2e-7
    assert blocks["worst_atol_at"] == "hidden_states step=3 block=transformer_blocks.1"
    assert (blocks["device"], blocks["dtype"]) == ("cuda", "float32")


def test_input_image_from_scikit_image_is_rgb_and_resized():
    image = images.load("skimage:camera", 64)  # a grey photo becomes RGB
    assert image.mode == "RGB" and image.size == (64, 64)
    path = images.as_file("skimage:camera", 64)
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(image))  # the same pixels for both sides


def test_unknown_input_image_is_a_one_line_error(tmp_path):
    with pytest.raises(ParityError, match="no photo called"):
        images.load("skimage:no_such_photo")
    bad = tmp_path / "not-an-image.png"
    bad.write_text("text")
    with pytest.raises(ParityError, match="cannot be read"):
        images.load(str(bad))


def test_suite_skips_gpu_cases_without_a_gpu_and_runs_them_in_their_dtype_with_one():
    gpu_case = Case(name="wide", fixture="x", device="cuda", dtype="bfloat16")
    assert suite.plan(gpu_case, ["float32", "bfloat16"], cuda=False) == ([], "device cuda; this machine has no GPU")
    assert suite.plan(gpu_case, ["float32", "bfloat16"], cuda=True) == (["bfloat16"], None)
    cpu_case = Case(name="tiny", fixture="x")
    assert suite.plan(cpu_case, ["float32", "bfloat16"], cuda=True) == (["float32", "bfloat16"], None)


def test_every_bundled_expected_failure_pins_where_it_diverges():
    from parity import cases, stages

    for case in cases.bundled().values():
        for dtype in cases.DTYPES:
            pinned = case.expected_divergence_for(dtype)
            if case.expected_for(dtype) == "fail":
                assert pinned is not None, f"{case.name} [{dtype}] expects a failure without saying where"
                assert pinned.split("/")[0] in stages.ORDER
            else:
                assert pinned is None


@pytest.mark.parametrize(
    "given",
    ["denoising", "nowhere/latents", {"float16": "decoding/frames"}, {"bfloat16": "decoding/frames"}],
)
def test_expected_divergence_must_name_a_stage_and_tensor_of_an_expected_failure(given):
    with pytest.raises(ParityError, match="expected_divergence"):
        Case(name="t", fixture="flux_tiny", expected={"float32": "fail"}, expected_divergence=given).validate()


def test_the_suite_holds_an_expected_failure_to_its_pinned_divergence(tmp_path, monkeypatch):
    case = Case(name="t", fixture="flux_tiny", expected="fail", expected_divergence="decoding/vae_input").validate()

    def fake_run(command, **kwargs):  # the subprocess's report, as `parity run` writes it
        out = tmp_path / "t"
        out.mkdir(exist_ok=True)
        (out / "report.json").write_text(json.dumps({"verdict": "fail", "first_divergence": where}))
        return type("Proc", (), {"stdout": "line", "stderr": ""})()

    monkeypatch.setattr(suite.subprocess, "run", fake_run)
    where = {"stage": "decoding", "tensor": "vae_input", "step": None, "block": None}
    assert suite.run_one(case, "float32", tmp_path / "t", "both")["ok"]
    where = {"stage": "latent_preparation", "tensor": "latents", "step": None, "block": None}
    assert not suite.run_one(case, "float32", tmp_path / "t", "both")["ok"]
