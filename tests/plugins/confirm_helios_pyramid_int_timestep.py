"""Confirm (throwaway): the pyramid's DiT timesteps differ because Diffusers truncates them to integers.

Diffusers' HeliosPyramidPipeline.__call__ hands its DiT `t.expand(...).to(torch.int64)`
(pipelines/helios/pipeline_helios_pyramid.py:928); SGLang's HeliosChunkedDenoisingStage._denoise_one_chunk_stage2
hands it the scheduler's float timestep as is (model_specific_stages/helios_denoising.py:375; the stage-wise
dynamic shift makes them fractional: 999.84 vs 999 at step 0). This truncates the timestep SGLang's Helios DiT
receives the same way; nothing else changes. (Helios' Stage 1 pipelines both pass the float timestep.)"""

import torch
from sglang.multimodal_gen.runtime.models.dits.helios import HeliosTransformer3DModel

_original = HeliosTransformer3DModel.__call__


def __call__(self, *args, **kwargs):
    # Before the module's hooks run: the harness records the timestep the DiT is called with.
    if isinstance(kwargs.get("timestep"), torch.Tensor):
        kwargs["timestep"] = kwargs["timestep"].to(torch.int64)
    return _original(self, *args, **kwargs)


HeliosTransformer3DModel.__call__ = __call__
