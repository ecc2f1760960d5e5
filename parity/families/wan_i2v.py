"""Wan2.1 image-to-video: Wan's UMT5 text side, plus CLIP image embeddings and the VAE-encoded first frame."""

import dataclasses

from parity.families.wan import WAN

WAN_I2V = dataclasses.replace(
    WAN,
    name="wan-i2v",
    diffusers_classes=("WanImageToVideoPipeline",),
    reference=dataclasses.replace(
        WAN.reference,
        # The CLIP vision encoder's second-to-last hidden state (B, 257, width), which the DiT embeds and
        # attends to beside the text: Diffusers' encode_image (SGLang's Req.image_embeds list).
        encoders=(("encode_image", ("image_embeds",)),),
        # The condition concatenated to the noise on the channel axis at every step: 4 mask channels (first
        # frame known) + the VAE-encoded image padded with zero frames, normalized by latents_mean / std:
        # (B, 20, T, H, W). The second item of Diffusers' prepare_latents (SGLang's Req.image_latent).
        prepare_latents=("latents", "image_latents"),
    ),
    port=dataclasses.replace(
        WAN.port,
        # SGLang 0.5.23 registers Wan2.1 I2V 14B 480P under this hub id (short name): its native
        # WanImageToVideoPipeline with WanI2V480PConfig (flow_shift 3, CLIP hidden_states[-2], VAE encoder loaded).
        model_id="Wan2.1-I2V-14B-480P-Diffusers",
        pipeline="WanImageToVideoPipeline",
        # The CLIP image embeddings (see reference.encoders).
        pooled_fields=(("image_embeds", ("image_embeds",)),),
        # The condition image's latents (see reference.prepare_latents).
        latent_fields=(("image_latent", "image_latents"),),
    ),
)
