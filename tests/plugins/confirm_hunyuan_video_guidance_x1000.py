"""Confirm (throwaway): the hunyuan-video denoising/dit_guidance divergence is the embedded guidance's units.
Diffusers' HunyuanVideoPipeline.__call__ hands its DiT guidance_scale * 1000 (6.0 -> 6000;
pipelines/hunyuan_video/pipeline_hunyuan_video.py:707), which the DiT's guidance embedder takes as is.
SGLang's DenoisingStage._build_guidance (runtime/pipelines_core/stages/denoising.py:1159) multiplies
pipeline_config.embedded_cfg_scale by 1000 only for Flux.1 configs, so SGLang's HunyuanVideo DiT receives 6.0
(its own forward defaults to 6016.0 = bf16(6000) when given none: runtime/models/dits/hunyuanvideo.py:783).
This multiplies it by 1000 for HunyuanConfig, as Diffusers does, in the DiT's dtype as Diffusers builds it
(torch.tensor([6.0], dtype=transformer_dtype) * 1000: 6016 in bf16; SGLang builds it in the latents' dtype)."""

from sglang.multimodal_gen.configs.pipeline_configs.hunyuan import HunyuanConfig
from sglang.multimodal_gen.runtime.pipelines_core.stages.denoising import DenoisingStage

_original = DenoisingStage.get_or_build_guidance


def get_or_build_guidance(self, bsz, dtype, device):
    guidance = _original(self, bsz, dtype, device)
    if guidance is not None and isinstance(self.server_args.pipeline_config, HunyuanConfig):
        return guidance.to(next(self.transformer.parameters()).dtype) * 1000.0
    return guidance


DenoisingStage.get_or_build_guidance = get_or_build_guidance
