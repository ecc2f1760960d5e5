"""GLM-Image: an AR model (GlmImageForConditionalGeneration, transformers' on both sides) samples image prior
tokens from the prompt, then a dual-stream DiT denoises on them, with ByT5/T5 glyph embeddings of the
prompt's quoted texts; CFG drops the prior tokens and uses the glyph embeddings of "".

SGLang's GlmImagePipeline is a Hybrid port: GlmImageAR (prior tokens -> Req.prior_token_id),
GlmImageBeforeDenoisingStage (glyph embeddings, initial noise, schedule), DenoisingStage, GlmImageDecodingStage.
"""

from __future__ import annotations

import re

from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec

# Both libraries' get_glyph_texts: the texts in '...', “...”, "..." and 「...」 are rendered as glyphs.
_GLYPH_PATTERNS = (r"'([^']*)'", r"\u201c([^\u201c\u201d]*)\u201d", r'"([^"]*)"', r"「([^「」]*)」")


class GlmImageAdapter(FamilyAdapter):
    def prompt_texts(self, prompt: str) -> set[str]:
        # The glyph tokenizer (ByT5) receives the prompt's quoted texts, not the prompt.
        glyphs = [text for pattern in _GLYPH_PATTERNS for text in re.findall(pattern, prompt)]
        return super().prompt_texts(prompt) | set(glyphs)


GLM_IMAGE = GlmImageAdapter(
    name="glm-image",
    diffusers_classes=("GlmImagePipeline",),
    reference=ReferenceSpec(
        # Diffusers' GlmImagePipeline.encode_prompt returns (prompt_embeds, negative_prompt_embeds).
        encode_prompt=("prompt_embeds", "negative_prompt_embeds"),
        # The AR model's sampled prior tokens (upsampled 2x to the DiT's patch grid): prompt conditioning that the
        # DiT consumes, so recorded at text encoding. Diffusers' generate_prior_tokens returns (prior_token_ids,
        # per-sample condition-image ids, grids); SGLang's GlmImageAR stage sets Req.prior_token_id (port.text_fields).
        encoders=(("generate_prior_tokens", ("prior_token_ids", None, None)),),
        # Diffusers passes t - 1 to its DiT; SGLang passes t and subtracts 1 inside.
        timestep_offset=1.0,
        # CFG is on for guidance_scale > 1 in Diffusers, and for guidance_scale > 1 with a negative prompt in
        # SGLang; the negative prompt is always "": Diffusers' pipeline takes none (its encode_prompt hard-codes
        # ""), SGLang's stage hard-codes "" too (the case states it, and SGLang's request gets it to turn CFG on).
        omitted_arguments=("negative_prompt",),
        cfg_scale_argument="guidance_scale",
    ),
    port=PortSpec(
        # SGLang registers GLM-Image with no hub id, only a detector on the path ("glm-image" in it): no model id
        # selects it, so the runner gives SGLang the model directory through a symlink of this name.
        model_id="zai-org/GLM-Image",
        model_path_alias="glm-image",
        pipeline="GlmImagePipeline",
        # The glyph tokenizer is the before-denoising stage's single `tokenizer` (Diffusers: the `tokenizer`).
        tokenizers=("tokenizer",),
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        # The AR prior tokens (see reference.encoders), a tensor field of the Req.
        text_fields=(("prior_token_id", "prior_token_ids"),),
        cfg_scale_argument="guidance_scale",
    ),
    block_lists=("transformer_blocks",),
    block_outputs=("hidden_states", "encoder_hidden_states"),
    dit_guidance=False,
)
