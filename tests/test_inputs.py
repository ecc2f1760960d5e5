"""A case's pipeline inputs (parity.inputs), the same mapping for both sides under each side's names;
the runners' package imports neither library until a runner is used."""

import subprocess
import sys

import pytest

from parity import families
from parity.cases import Case
from parity.families.base import PortSpec, ReferenceSpec
from parity.inputs import pipeline_inputs
from parity.vocab import Side


def image(spec, size, mode):
    return ("image", spec, size, mode)


def inputs(case, family, side, library=None):
    return pipeline_inputs(case, families.get(family), side, library or {}, image)


def test_adapter_side_returns_each_sides_spec():
    flux = families.get("flux")
    assert isinstance(flux.side(Side.REFERENCE), ReferenceSpec) and flux.side(Side.REFERENCE) is flux.reference
    assert isinstance(flux.side(Side.PORT), PortSpec) and flux.side("port") is flux.port
    assert (flux.reference.timestep_scale, flux.port.guidance_scale) == (1000.0, 1e-3)
    assert (flux.reference.image_argument, flux.port.image_argument) == ("image", "image_path")


def test_cfg_scale_frames_image_and_omitted_arguments_under_each_sides_names():
    case = Case(
        name="t",
        family="qwen-image-layered",
        fixture="f",
        negative_prompt=" ",
        true_cfg_scale=4.0,
        num_frames=2,
        input_image="skimage:astronaut",
        input_image_size=64,
    )
    reference = inputs(case, "qwen-image-layered", Side.REFERENCE, {"output_type": "pt"})
    port = inputs(case, "qwen-image-layered", Side.PORT, {"seed": 0})
    assert reference["layers"] == 2 and "num_frames" not in reference
    assert "height" not in reference and "width" not in reference  # the Diffusers pipeline takes neither
    assert reference["image"] == port["image_path"] == ("image", "skimage:astronaut", 64, "RGBA")
    assert port["num_frames"] == 2 and (port["height"], port["width"]) == (64, 64)
    for side in (reference, port):
        assert side["negative_prompt"] == " " and side["true_cfg_scale"] == 4.0
        assert side["cfg_normalize"] is True and side["use_en_prompt"] is True
    assert reference["output_type"] == "pt" and port["seed"] == 0


def test_the_cfg_scale_may_replace_guidance_scale():
    case = Case(name="t", family="sd3", fixture="f", negative_prompt="blurry", true_cfg_scale=5.0, guidance_scale=3.5)
    for side in Side:
        assert inputs(case, "sd3", side)["guidance_scale"] == 5.0


@pytest.mark.parametrize("negative_prompt", [None, "blurry"])
def test_a_librarys_own_input_is_replaced_by_the_cases(negative_prompt):
    case = Case(
        name="t",
        family="flux",
        fixture="f",
        negative_prompt=negative_prompt,
        true_cfg_scale=None if negative_prompt is None else 4.0,
    )
    port = inputs(case, "flux", Side.PORT, {"negative_prompt": None, "generator_device": "cpu"})
    assert port["negative_prompt"] == negative_prompt and port["generator_device"] == "cpu"
    reference = inputs(case, "flux", Side.REFERENCE)
    assert ("negative_prompt" in reference) == (negative_prompt is not None)


def test_reference_only_omissions_leave_the_port_alone():
    case = Case(name="t", family="glm-image", fixture="f", negative_prompt="", true_cfg_scale=1.5)
    assert "negative_prompt" not in inputs(case, "glm-image", Side.REFERENCE)
    assert inputs(case, "glm-image", Side.PORT)["negative_prompt"] == ""


def test_runners_import_no_library_until_one_runs():
    code = (
        "import sys\n"
        "from parity.runners import runner_for\n"
        "from parity.vocab import Side\n"
        "reference, port = runner_for(Side.REFERENCE), runner_for('port')\n"
        "assert (reference.side, port.side) == (Side.REFERENCE, Side.PORT)\n"
        "assert runner_for('reference') is reference and runner_for(Side.PORT) is port\n"
        "print(sorted({'diffusers', 'sglang'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
