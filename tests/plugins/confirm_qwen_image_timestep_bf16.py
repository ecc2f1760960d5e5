"""Confirms the cause of Qwen-Image's bf16 divergence at `dit_time_embedding_input.0`: Diffusers'
QwenImagePipeline casts t to the latents' dtype and passes t / 1000, computed in bf16 (t rounded, then
t / 1000 rounded again); SGLang's DiT divides the float32 t by 1000 and rounds once. With this plugin
SGLang's Qwen-Image DiT receives the timestep Diffusers' pipeline would hand its own DiT, so both
round the same way; the timestep the harness records as the DiT's input is left as SGLang made it.
"""

import functools

import torch
from sglang.multimodal_gen.runtime.models.dits.qwen_image import QwenImageTransformer2DModel

_forward = QwenImageTransformer2DModel.forward


@functools.wraps(_forward)
def forward(self, *args, **kwargs):
    timestep = kwargs.get("timestep")
    hidden_states = kwargs.get("hidden_states", args[0] if args else None)
    if timestep is not None and hidden_states is not None and hidden_states.dtype == torch.bfloat16:
        bf16 = torch.bfloat16
        # SGLang then computes (timestep / 1000).to(bf16): exactly Diffusers' bf16(bf16(t) / 1000)
        kwargs["timestep"] = ((timestep.to(bf16) / 1000).to(bf16).float() * 1000).to(timestep.dtype)
    return _forward(self, *args, **kwargs)


QwenImageTransformer2DModel.forward = forward
