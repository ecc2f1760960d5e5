"""FLUX.2 [klein]: FLUX.2's DiT without a guidance embedding, a Qwen3 text encoder (three stacked hidden states)."""

from __future__ import annotations

import dataclasses

from parity.families.base import PortSpec
from parity.families.flux2 import FLUX2

FLUX2_KLEIN = dataclasses.replace(
    FLUX2,
    name="flux2-klein",
    diffusers_classes=("Flux2KleinPipeline",),
    # "black-forest-labs/FLUX.2-klein-4B": the step-distilled Klein (no CFG; "-base-" ids select the
    # undistilled one, with CFG).
    port=PortSpec(
        model_id="FLUX.2-klein-4B",
        pipeline="Flux2KleinPipeline",
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
    ),
    # Both sides tokenize Qwen3's chat template with the generation prompt and thinking off.
    prompt_templates=("<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",),
    dit_guidance=False,
)

# The undistilled Klein base: the same Diffusers class with `is_distilled` off runs CFG against the fixed
# negative prompt "" (it takes no negative_prompt argument), with the CFG scale as `guidance_scale` on both
# sides; SGLang needs the "-base-" model id for its CFG config (Flux2KleinBasePipelineConfig). `detect` picks
# the distilled adapter for a Flux2KleinPipeline directory (registered first): pass --family for a base one.
FLUX2_KLEIN_BASE = dataclasses.replace(
    FLUX2_KLEIN,
    name="flux2-klein-base",
    reference=dataclasses.replace(
        FLUX2_KLEIN.reference, cfg_scale_argument="guidance_scale", omitted_arguments=("negative_prompt",)
    ),
    port=dataclasses.replace(
        FLUX2_KLEIN.port,
        model_id="FLUX.2-klein-base-4B",
        cfg_scale_argument="guidance_scale",
    ),
)
