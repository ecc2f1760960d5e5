"""Helios pyramid text-to-video (Helios-Mid: Stage 1 + Stage 2 pyramid super-resolution, CFG-Zero*).

Helios' chunked pipeline (see helios.py), where each chunk is denoised at three latent resolutions: its noise is
downsampled 4x (bilinear), denoised, then upsampled 2x (nearest) and re-noised with block-correlated noise before
each further stage, each stage with a schedule of its own. The case's `steps` are the pyramid's, one per stage.
"""

import dataclasses

from parity.families.helios import HELIOS

# Denoising steps per pyramid stage: Diffusers takes them per call, SGLang from its pipeline config (whose
# HeliosMidConfig default, 20 per stage, ignores the request's num_inference_steps).
PYRAMID_STEPS = (1, 1, 1)

HELIOS_PYRAMID = dataclasses.replace(
    HELIOS,
    name="helios-pyramid",
    diffusers_classes=("HeliosPyramidPipeline",),
    reference=dataclasses.replace(
        HELIOS.reference,
        # Diffusers' HeliosPyramidPipeline takes its steps as pyramid_num_inference_steps_list only.
        omitted_arguments=("num_inference_steps",),
    ),
    port=dataclasses.replace(
        HELIOS.port,
        # SGLang 0.5.23 registers Helios-Mid under this hub id: HeliosMidConfig (is_enable_stage2, 3 pyramid
        # stages, is_cfg_zero_star, gamma 1/3); SGLang's HeliosPyramidPipeline is HeliosPipeline's stages.
        model_id="Helios-Mid",
        pipeline="HeliosPyramidPipeline",
        config_inputs=("pyramid_num_inference_steps_list",),
    ),
    call_inputs=(("pyramid_num_inference_steps_list", PYRAMID_STEPS),),
)
