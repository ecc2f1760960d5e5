"""Fault: the port hands Wan's negative branch only the negative prompt's own tokens, its zero padding cut
(as Wan's original code cuts the context to its length), where Diffusers passes all 512: Wan's DiT has no
text mask, so the padding it drops took part in the cross-attention. Patched into SGLang's
WanT2V480PConfig.get_neg_prompt_embeds. Text encoding, the conditional branch and its blocks match; only
noise_pred_uncond differs. Run on wan-t2v-tiny after confirm_wan_diffusers_schedule.py (the case's own
divergence)."""

from sglang.multimodal_gen.configs.pipeline_configs.wan import WanT2V480PConfig


def get_neg_prompt_embeds(self, batch):
    negative = batch.negative_prompt_embeds[0]
    used = negative.abs().sum(dim=(0, 2)).nonzero()
    length = int(used.max()) + 1 if used.numel() else negative.shape[1]
    return negative[:, :length]


WanT2V480PConfig.get_neg_prompt_embeds = get_neg_prompt_embeds
