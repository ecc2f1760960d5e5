"""Fault: the port's Wan DiT unpatchifies with the patch's height and width sub-axes swapped (permute
(0, 7, 1, 4, 2, 6, 3, 5) where Diffusers' WanTransformer3DModel uses (0, 7, 1, 4, 2, 5, 3, 6)): patched into
SGLang's WanTransformer3DModel._unpatchify, which runs after the last block (final norm, proj_out, then the
token grid back to (B, C, T, H, W)). Every block matches; the DiT's output holds the right values in
another order. Run on wan-t2v-tiny after confirm_wan_diffusers_schedule.py (the case's own divergence)."""

from sglang.multimodal_gen.runtime.models.dits.wanvideo import WanTransformer3DModel


def _unpatchify(self, hidden_states, timestep_embeddings, grid_size):
    shift, scale = (self.scale_shift_table + timestep_embeddings.unsqueeze(1)).chunk(2, dim=1)  # Wan2.1: 2-D temb
    hidden_states = self.norm_out(hidden_states, shift, scale)
    hidden_states, _ = self.proj_out(hidden_states)
    hidden_states = hidden_states.reshape(hidden_states.shape[0], *grid_size, *self.patch_size, -1)
    hidden_states = hidden_states.permute(0, 7, 1, 4, 2, 6, 3, 5)  # p_h and p_w swapped
    return hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)


WanTransformer3DModel._unpatchify = _unpatchify
