"""Confirms the cause of Flux's block drift at real depth in bf16: Diffusers conditions its DiT on
the timestep rounded to bfloat16 (FluxPipeline casts t to the latents' dtype and passes t / 1000, its
DiT multiplies back by 1000, each in bf16: t = 888.64 reaches the time embedding as 888), SGLang on
the float32 timestep (888.64). With this plugin SGLang's Flux DiT rounds its timestep the same way
before embedding it; the timestep the harness records as the DiT's input is left as SGLang made it.
"""

import functools

import torch
from sglang.multimodal_gen.runtime.models.dits.flux import FluxTransformer2DModel

_forward = FluxTransformer2DModel.forward


@functools.wraps(_forward)
def forward(self, *args, **kwargs):
    timestep = kwargs.get("timestep")
    hidden_states = kwargs.get("hidden_states", args[0] if args else None)
    if timestep is not None and hidden_states is not None and hidden_states.dtype == torch.bfloat16:
        bf16 = torch.bfloat16
        kwargs["timestep"] = ((timestep.to(bf16) / 1000).to(bf16) * 1000).to(bf16).to(timestep.dtype)
    return _forward(self, *args, **kwargs)


FluxTransformer2DModel.forward = forward
