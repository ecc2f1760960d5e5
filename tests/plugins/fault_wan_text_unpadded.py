"""Fault: the port keeps only the prompt's own UMT5 tokens where Diffusers' WanPipeline zero-pads the
sequence to max_sequence_length (512): the padding is dropped. Patched into SGLang's t5_postprocess_text
(configs.pipeline_configs.wan), which WanT2V480PConfig's postprocess_text_funcs name; it returns the
embedding-aligned mask SGLang requires of a postprocess that changes the length. The token ids and masks
match; prompt_embeds are shorter, their common tokens equal. Run on wan-t2v-tiny after
confirm_wan_diffusers_schedule.py (the case's own divergence)."""

from sglang.multimodal_gen.configs.pipeline_configs import wan
from sglang.multimodal_gen.configs.pipeline_configs.base import pad_text_embeddings_with_mask


def t5_postprocess_text(outputs, _text_inputs):
    lengths = outputs.attention_mask.gt(0).sum(dim=1).long()
    return pad_text_embeddings_with_mask([u[:v] for u, v in zip(outputs.last_hidden_state, lengths, strict=True)])


wan.t5_postprocess_text = t5_postprocess_text
