"""Confirm (throwaway): the sana input_ids divergence is Diffusers' prompt preprocessing. Diffusers'
SanaPipeline._get_gemma_prompt_embeds calls _text_preprocessing (clean_caption off: `text.lower().strip()`)
before tokenizing; SGLang's SanaPipelineConfig has no preprocess function (preprocess_text_funcs = (None,),
sglang/multimodal_gen/configs/pipeline_configs/sana.py), so the Gemma tokenizer sees the prompt as typed.
This gives SGLang's Sana the same preprocessing (as its SanaVideoTextEncodingStage._normalize_text does)."""

from sglang.multimodal_gen.configs.pipeline_configs import sana


def _lower_strip(text: str) -> str:
    return text.lower().strip()


_init = sana.SanaPipelineConfig.__init__


def __init__(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.preprocess_text_funcs = (_lower_strip,)


sana.SanaPipelineConfig.__init__ = __init__
