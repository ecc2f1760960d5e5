"""A case's pipeline inputs, named as each side's pipeline takes them: the one mapping from a case to the
arguments both runners hand their library. Pure: it imports neither Diffusers nor SGLang; each runner
passes in only its library's own bits (how it seeds the noise, its output type, ...) and how its library
takes the input image (a PIL image, or a file path)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from parity.cases import Case
from parity.families.base import FamilyAdapter
from parity.vocab import Side

# (case.input_image, case.input_image_size, the adapter's input_image_mode) -> what the pipeline takes
ImageLoader = Callable[[str, "int | None", str], Any]


def pipeline_inputs(
    case: Case, adapter: FamilyAdapter, side: Side, library: Mapping[str, Any], image: ImageLoader
) -> dict[str, Any]:
    """The pipeline inputs of `side` for the case: prompt, size, steps and guidance; `library` (the
    runner's own inputs; a case input of the same name replaces one); the negative prompt with the CFG
    scale, the frame count and the input image under the side's argument names; the adapter's
    `call_inputs` and the side's own; less the arguments the side's pipeline does not take."""
    spec = adapter.side(side)
    inputs = {
        "prompt": case.prompt,
        "height": case.height,
        "width": case.width,
        "num_inference_steps": case.steps,
        "guidance_scale": case.guidance_scale,
        **library,
    }
    if case.num_frames is not None:  # video pipelines only (or Qwen-Image-Layered's layers)
        inputs[spec.num_frames_argument] = case.num_frames
    if case.negative_prompt is not None:  # the CFG scale may replace guidance_scale (SD3)
        # (Case.validate: true_cfg_scale is set exactly when negative_prompt is.)
        inputs["negative_prompt"] = case.negative_prompt
        inputs[spec.cfg_scale_argument] = case.true_cfg_scale
    if case.input_image is not None:  # the same pixels on both sides
        inputs[spec.image_argument] = image(case.input_image, case.input_image_size, adapter.input_image_mode)
    inputs.update(adapter.call_inputs)  # inputs whose defaults differ between the libraries
    inputs.update(spec.call_inputs)  # inputs only this side's pipeline takes
    omitted = adapter.reference.omitted_arguments if side == Side.REFERENCE else ()
    for name in omitted:  # arguments this pipeline does not take
        inputs.pop(name, None)
    return inputs
