"""Fault: the port's decoded frames are replaced by uniform noise (a decoder that outputs garbage)."""

import functools

import torch
from sglang.multimodal_gen.runtime.pipelines_core.stages.decoding import DecodingStage

_original = DecodingStage.forward


@functools.wraps(_original)
def forward(self, batch, server_args):
    result = _original(self, batch, server_args)
    generator = torch.Generator().manual_seed(0)
    result.output = torch.rand(result.output.shape, generator=generator).to(result.output)
    return result


DecodingStage.forward = forward
