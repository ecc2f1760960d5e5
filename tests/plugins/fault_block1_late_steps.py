"""Fault inside one DiT block: the port's transformer_blocks.1 adds 1% to its image stream,
only while the timestep is below 700 (from the third of flux-tiny's four steps on).

The first failing step is then neither the first nor the last, so the default block-capture
policy has to capture that step in a second run.
"""

import functools

from sglang.multimodal_gen.runtime.models.dits.flux import FluxTransformer2DModel, FluxTransformerBlock

_forward = FluxTransformerBlock.forward
_model_forward = FluxTransformer2DModel.forward
_state = {"timestep": None}


@functools.wraps(_model_forward)
def model_forward(self, *args, **kwargs):
    _state["timestep"] = float(kwargs["timestep"].flatten()[0])
    for index, block in enumerate(self.transformer_blocks):
        block._parity_index = index
    return _model_forward(self, *args, **kwargs)


@functools.wraps(_forward)
def forward(self, *args, **kwargs):
    encoder_hidden_states, hidden_states = _forward(self, *args, **kwargs)
    if getattr(self, "_parity_index", None) == 1 and _state["timestep"] < 700:
        hidden_states = hidden_states * 1.01
    return encoder_hidden_states, hidden_states


FluxTransformer2DModel.forward = model_forward
FluxTransformerBlock.forward = forward
