"""Confirm (throwaway): the bf16 sana-video drift starts at the memory layout of the DiT's residual stream.
SGLang's SanaVideoTransformerBlock.forward (sglang/multimodal_gen/runtime/models/dits/sana_video.py:403) adds
the cross-attention as `hidden_states + self.attn2(...)`, Diffusers' (diffusers/models/transformers/
transformer_sana_video.py:443) as `attn_output + hidden_states`. The values are equal, but on a CPU the sum takes
the layout of the first operand: the residual's transposed patch-embedding layout in SGLang, a contiguous one in
Diffusers. The next block's cross-attention query (an nn.Linear with a bias) then gets its bf16 input in another
layout, and torch's CPU linear rounds differently by layout when there is a bias (measured: 897 of 3072 outputs
1 ulp apart; none without the bias): 1-ulp differences that CFG (scale 6) amplifies over the steps.
This is SGLang's block forward with Diffusers' operand order; nothing else changes."""

from sglang.multimodal_gen.runtime.models.dits import sana_video
from sglang.multimodal_gen.runtime.models.dits.sana import sana_ln_modulate, sana_residual_gate_add


def forward(
    self, hidden_states, encoder_hidden_states, encoder_attention_mask, timestep, frames, height, width, rotary_emb
):
    batch_size = hidden_states.shape[0]
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
        self.scale_shift_table[None, None] + timestep.reshape(batch_size, timestep.shape[1], 6, -1)
    ).unbind(dim=2)
    norm_hidden_states = sana_ln_modulate(self.norm1, hidden_states, scale_msa, shift_msa)
    hidden_states = sana_residual_gate_add(
        hidden_states, self.attn1(norm_hidden_states.to(hidden_states.dtype), rotary_emb), gate_msa
    )
    hidden_states = self.attn2(hidden_states, encoder_hidden_states, encoder_attention_mask) + hidden_states
    norm_hidden_states = sana_ln_modulate(self.norm2, hidden_states, scale_mlp, shift_mlp)
    norm_hidden_states = norm_hidden_states.unflatten(1, (frames, height, width))
    ff_output = self.ff(norm_hidden_states).flatten(1, 3)
    return sana_residual_gate_add(hidden_states, ff_output, gate_mlp)


sana_video.SanaVideoTransformerBlock.forward = forward
