"""Parallelism fault: the sequence-parallel padding is not trimmed where the shards are put back.

SGLang pads the packed latents to a multiple of the SP degree at the end before splitting them;
after the loop it gathers them and trims that padding (maybe_unpad_latents). Here the trim keeps
the last tokens instead of the first: the pad stays in and the first real token is lost, so every
latent token is shifted by one. Everything in the denoising loop matches the one-rank run; the
decoder's input does not (Qwen-Image at 112x112: 49 tokens, padded to 50; `--port-parallel
ulysses=2`, with tests/plugins/confirm_qwen_image_sp_pad_masked.py so that SGLang's own pad bug at this
size does not diverge first).
"""

import functools

from sglang.multimodal_gen.configs.pipeline_configs import base, qwen_image

_original = base.maybe_unpad_latents


@functools.wraps(_original)
def _keep_the_tail(latents, batch):
    target = batch.raw_latent_shape[1]
    if latents.dim() == 3 and latents.shape[1] > target:
        return latents[:, -target:, :]
    return _original(latents, batch)


base.maybe_unpad_latents = qwen_image.maybe_unpad_latents = _keep_the_tail
