"""Fault: the port builds its request generators without seeding them (torch.Generator(device), no
manual_seed), so the initial noise is drawn from torch's default seed whatever the request's seed. The
run still completes; every tensor after the noise differs. The first divergence must be the Req
contract's `latents_seed`, naming the generator's seed, one step before the latents it explains."""

import functools

import torch
from sglang.multimodal_gen.runtime.pipelines_core.stages.input_validation import InputValidationStage

_original = InputValidationStage.forward


@functools.wraps(_original)
def forward(self, batch, server_args):
    batch = _original(self, batch, server_args)
    batch.generator = [torch.Generator(generator.device) for generator in batch.generator]
    return batch


InputValidationStage.forward = forward
