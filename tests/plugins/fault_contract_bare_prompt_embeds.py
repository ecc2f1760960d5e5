"""Fault: the port's text encoding stage stores the T5 embeddings as a bare tensor in Req.prompt_embeds,
not one list item per text encoder (the skill: wrap a lone tensor as [tensor]). SGLang's own
TextEncodingStage.verify_output rejects it with a StageVerificationError: the run must fail at the Req
contract (exit 1) naming the field and the skill's rule, not end as a setup error."""

import functools

from sglang.multimodal_gen.runtime.pipelines_core.stages.text_encoding import TextEncodingStage

_original = TextEncodingStage.forward


@functools.wraps(_original)
def forward(self, batch, server_args):
    batch = _original(self, batch, server_args)
    batch.prompt_embeds = batch.prompt_embeds[-1]  # Flux: [CLIP pooled, T5] -> the T5 tensor alone
    return batch


TextEncodingStage.forward = forward
