"""Confirm (throwaway): part of the bf16 sana-video drift is the rounding of Gemma2's rotary embedding.
SGLang's RotaryEmbedding (neox style, as its Gemma2Attention uses it) rotates in float32 and rounds once
(sglang/multimodal_gen/runtime/layers/rotary_embedding/utils.py:88, _apply_rotary_emb: `x1.float() * cos - ...`);
transformers' Gemma2 casts cos/sin to the activations' dtype and rotates in bf16 (apply_rotary_pos_emb:
`q * cos + rotate_half(q) * sin`, each product and the sum rounded). This rotates SGLang's neox-style RoPE the
transformers way; the interleaved style (not used by Gemma2) is left alone."""

import torch
from sglang.multimodal_gen.runtime.layers.rotary_embedding import base

_original = base._apply_rotary_emb


def _apply_rotary_emb(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, is_neox_style: bool, interleaved: bool = False
):
    if not is_neox_style:
        return _original(x, cos, sin, is_neox_style, interleaved)
    cos = cos.unsqueeze(-2).to(x.dtype)
    sin = sin.unsqueeze(-2).to(x.dtype)
    x1, x2 = torch.chunk(x, 2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


base._apply_rotary_emb = _apply_rotary_emb
