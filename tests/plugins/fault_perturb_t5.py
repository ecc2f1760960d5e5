"""Fault: the port's T5 encoder output is off by 5% (as with a wrong final norm or layer)."""

import functools

from sglang.multimodal_gen.runtime.models.encoders.t5 import T5EncoderModel

_original = T5EncoderModel.forward


@functools.wraps(_original)
def forward(self, *args, **kwargs):
    output = _original(self, *args, **kwargs)
    output.last_hidden_state = output.last_hidden_state * 1.05
    return output


T5EncoderModel.forward = forward
