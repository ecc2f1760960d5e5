"""Confirm (throwaway): SGLang's Helios initial noise is the seeded generator's second draw.

HeliosPipeline (runtime/pipelines/helios_pipeline.py:62, create_pipeline_stages) runs the standard
LatentPreparationStage, which draws Req.latents from Req.generator (pipelines_core/stages/latent_preparation.py:172,
LatentPreparationStage.forward, randn_tensor(..., generator=generator)); HeliosChunkedDenoisingStage.forward never
reads those latents and draws each chunk's noise from the same generator again
(model_specific_stages/helios_denoising.py:670, torch.randn(latent_shape, generator=generator)), where
Diffusers' HeliosPipeline draws its first chunk's noise as the generator's first draw. This restores the
generators' state after the latent preparation stage, so the unused draw no longer advances them; nothing else
changes."""

import functools

from sglang.multimodal_gen.runtime.pipelines_core.stages.latent_preparation import LatentPreparationStage

_original = LatentPreparationStage.forward


@functools.wraps(_original)
def forward(self, batch, server_args):
    generators = batch.generator if isinstance(batch.generator, list) else [batch.generator]
    states = [(g, g.get_state()) for g in generators if g is not None]
    result = _original(self, batch, server_args)
    for generator, state in states:
        generator.set_state(state)
    return result


LatentPreparationStage.forward = forward
