"""Fault: from the second denoising step on (step 1), the port's DiT output holds NaN in its first
token (as an fp16 overflow in one attention row would leave it); step 0 is untouched.

The DiT is called once per step on flux-tiny (no CFG). Calls are counted per request: a timestep
that does not decrease starts a new request (each run of the pipeline, the block-capture rerun too).
"""

import functools

from sglang.multimodal_gen.runtime.models.dits.flux import FluxTransformer2DModel

_original = FluxTransformer2DModel.forward
_state = {"calls": 0, "timestep": None}


def _poison(output):
    output = output.clone()
    output[:, 0] = float("nan")  # (batch, tokens, channels): every channel of token 0
    return output


@functools.wraps(_original)
def forward(self, *args, **kwargs):
    timestep = float(kwargs["timestep"].flatten()[0])
    if _state["timestep"] is None or timestep >= _state["timestep"]:
        _state["calls"] = 0  # a new request
    else:
        _state["calls"] += 1
    _state["timestep"] = timestep
    output = _original(self, *args, **kwargs)
    if _state["calls"] < 1:
        return output
    if isinstance(output, tuple):
        return (_poison(output[0]), *output[1:])
    return _poison(output)


FluxTransformer2DModel.forward = forward
