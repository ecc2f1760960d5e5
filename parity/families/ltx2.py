"""LTX-2: audio + video. A Gemma3 text encoder whose every hidden state is packed into the text features, text
connectors that turn them into the video and audio prompt embeddings, one DiT over both streams, packed video
latents (B, F*H*W, C) and packed audio latents (B, L, C*M)."""

from __future__ import annotations

import torch

from parity.errors import ParityError
from parity.families.base import FamilyAdapter, PortSpec, ReferenceSpec
from parity.trace import Record

# LTX-2's video VAE compresses 32x spatially (patch 4, then 3 levels of 2x); the DiT's patch size is 1.
SPATIAL_FACTOR = 32


class LTX2Adapter(FamilyAdapter):
    def convert(self, record: Record) -> torch.Tensor:
        if record.layout == "ltx_packed" and record.value.ndim == 3:  # a 5-D tensor is already unpacked
            return unpack_tokens(record.value, record.meta["height"], record.meta["width"])
        return super().convert(record)


def unpack_tokens(packed: torch.Tensor, image_height: int, image_width: int) -> torch.Tensor:
    """(B, F*H*W, C) tokens in (frame, row, column) order -> (B, C, F, H, W), as Diffusers' `_unpack_latents`
    with patch size 1."""
    batch, tokens, channels = packed.shape
    rows, cols = image_height // SPATIAL_FACTOR, image_width // SPATIAL_FACTOR
    if rows * cols == 0 or tokens % (rows * cols):
        raise ParityError(
            f"cannot unpack LTX-2 latents of shape {list(packed.shape)} for a {image_height}x{image_width} video"
        )
    return packed.reshape(batch, tokens // (rows * cols), rows, cols, channels).permute(0, 4, 1, 2, 3)


LTX2 = LTX2Adapter(
    name="ltx2",
    diffusers_classes=("LTX2Pipeline",),
    reference=ReferenceSpec(
        # Diffusers' LTX2Pipeline.encode_prompt returns (prompt_embeds, prompt_attention_mask,
        # negative_prompt_embeds, negative_prompt_attention_mask): Gemma's packed hidden states, which the
        # connectors below turn into what the DiT receives (those records replace these).
        encode_prompt=("prompt_embeds", None, "negative_prompt_embeds", None),
        # The connectors run on [negative, prompt] as one batch and return (video embeddings, audio
        # embeddings, attention mask); the DiT then runs both CFG branches as one batch, unconditional first.
        text_modules=(("connectors", ("prompt_embeds", "audio_prompt_embeds", None)),),
        cfg_batch="uncond_cond",
        # The audio stream's initial noise, packed (B, L, C*M).
        latent_methods=(("prepare_audio_latents", ("audio_latents",)),),
        cfg_scale_argument="guidance_scale",
        # The pipeline builds the RoPE coordinates in float32 and passes them in; SGLang's DiT builds them itself.
        replay_floor_arguments=("video_coords", "audio_coords"),
    ),
    port=PortSpec(
        # SGLang 0.5.23 registers Lightricks/LTX-2 (short name "LTX-2") with LTX2PipelineConfig.
        model_id="LTX-2",
        pipeline="LTX2Pipeline",
        # SGLang's LTX2TextConnectorStage replaces Req.prompt_embeds (Gemma's packed features) with the video
        # connector's output and adds the audio connector's in Req.audio_prompt_embeds.
        prompt_embeds=("prompt_embeds",),
        negative_prompt_embeds=("negative_prompt_embeds",),
        pooled_fields=(
            ("audio_prompt_embeds", ("audio_prompt_embeds",)),
            ("negative_audio_prompt_embeds", ("negative_audio_prompt_embeds",)),
        ),
        latent_fields=(("audio_latents", "audio_latents"),),
        cfg_scale_argument="guidance_scale",
        # SGLang's LTX2AVDecodingStage returns the video processor's numpy frames, (B, T, H, W, C).
        frames_layout="bthwc",
        # LTX2PipelineConfig.audio_vae_precision (default bf16) is the dtype SGLang decodes the audio latents
        # in, whatever vae_precision says.
        precision_fields=("audio_vae_precision",),
        # SGLang's LTX-2 denoising stage projects every block's prompt K/V before the loop, in the run dtype, and
        # calls the DiT without the prompt embeddings: a float64 replay needs them projected in the call.
        replay_dit_attributes=(("caches_prompt_kv", False),),
    ),
    # Both libraries keep the video latents packed (B, F*H*W, C) through denoising.
    latent_layout="ltx_packed",
    block_lists=("transformer_blocks",),
    # Every block updates both streams.
    block_outputs=("hidden_states", "audio_hidden_states"),
    video=True,
    dit_guidance=False,
    # The vocoder's waveform, (B, 2, samples), beside the frames.
    audio_output=True,
)
