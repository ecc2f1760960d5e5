"""Confirms the cause of `qwen-image-tiny-sp-pad` (throwaway: not a fix to ship).

With Ulysses SP and no text mask, SGLang's QwenImageTransformer2DModel.forward
(runtime/models/dits/qwen_image.py, the `should_shard_text` branch) shards the text stream and hands
attention a tail-pad mask built from the *text* shard only (`tail_attn_meta(txt_shard, ...)`, None
when the text needs no padding). The image latents were padded too, by the denoising stage
(`shard_latents_for_sp`, 49 tokens at 112x112 -> 50), and nothing masks that pad token: every real
token attends to it. This plugin hands attention the image pad's span (the gathered sequence's
tail) as the tail-pad metadata; with it the 2-rank port matches its one-rank run and the reference.
"""

import functools

from sglang.multimodal_gen.runtime.distributed.parallel_state import get_sp_world_size
from sglang.multimodal_gen.runtime.models.dits import qwen_image as dit

_forward = dit.QwenImageTransformer2DModel.forward


@functools.wraps(_forward)
def _forward_with_image_pad_masked(self, hidden_states, *args, **kwargs):
    sp = get_sp_world_size()
    shapes, text = kwargs.get("img_shapes"), kwargs.get("encoder_hidden_states")
    text = text[0] if isinstance(text, list) else text
    mask = kwargs.get("encoder_hidden_states_mask")
    if sp > 1 and shapes and (mask is None or (isinstance(mask, list) and mask[0] is None)) and text is not None:
        real = sum(f * h * w for f, h, w in shapes[0])
        pad = hidden_states.shape[1] * sp - real
        text_local = -(-text.shape[1] // sp)
        gathered = sp * (text_local + hidden_states.shape[1])  # [text, image] per rank, ranks in order
        if pad > 0 and text_local * sp == text.shape[1]:  # the text needs no pad: SGLang masks nothing
            meta = {"pad_start": gathered - pad, "pad_end": gathered}
            kwargs["attention_kwargs"] = {**(kwargs.get("attention_kwargs") or {}), "attn_mask_meta": meta}
    return _forward(self, hidden_states, *args, **kwargs)


dit.QwenImageTransformer2DModel.forward = _forward_with_image_pad_masked
