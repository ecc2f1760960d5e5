"""Fault: the port's Qwen-Image DiT reads its final norm's modulation in the other order, (shift, scale),
where Diffusers' AdaLayerNormContinuous chunks it as (scale, shift): patched into SGLang's `_qwen_norm_out`
(sglang...models.dits.qwen_image), which QwenImageTransformer2DModel.forward calls after its last block.
Every block matches; only the DiT's output differs (qwen-image-tiny)."""

from sglang.multimodal_gen.runtime.models.dits import qwen_image


def _norm_out_shift_first(norm_out, hidden_states, conditioning_embedding):
    emb = norm_out.linear(norm_out.silu(conditioning_embedding).to(hidden_states.dtype))
    shift, scale = emb.chunk(2, dim=1)  # Diffusers: scale, shift = emb.chunk(2, dim=1)
    return norm_out.norm(hidden_states) * (1 + scale)[:, None, :] + shift[:, None, :]


qwen_image._qwen_norm_out = _norm_out_shift_first
