"""What the harness must know about one model family, declared in one small adapter."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from parity.errors import ParityError
from parity.trace import Record


@dataclass(frozen=True)
class FamilyAdapter:
    """Declarative facts about a family, plus layout conversions to the canonical layout.

    name: the family name users pass as --family.
    diffusers_classes: model_index.json `_class_name`s this family covers (Diffusers side).
    sglang_model_id: the model id that makes SGLang resolve its native pipeline for a local dir
        (a local directory name does not match SGLang's registry: see README, "Fallback trap").
    sglang_pipeline: the native SGLang pipeline class the port must resolve to.
    port_prompt_embeds / port_negative_prompt_embeds: the canonical name of each element of the
        port's `Req.prompt_embeds` / `Req.negative_prompt_embeds` lists.
    reference_encode_prompt: the canonical name of each item Diffusers' `encode_prompt`
        returns (None for items that are not compared, e.g. Flux's text_ids).
    latent_layout: the layout both libraries keep latents in during denoising
        ("canonical", or a family layout such as Flux's "packed", converted by `convert`).
    video: True when frames carry a time axis (B, C, T, H, W); images are (B, C, H, W).
    """

    name: str
    diffusers_classes: tuple[str, ...]
    sglang_model_id: str
    sglang_pipeline: str
    port_prompt_embeds: tuple[str, ...]
    port_negative_prompt_embeds: tuple[str, ...] = ()
    reference_encode_prompt: tuple[str | None, ...] = ("prompt_embeds",)
    latent_layout: str = "canonical"
    video: bool = False

    def to_canonical(self, record: Record) -> torch.Tensor:
        if record.layout == "canonical":
            return record.value
        if record.layout == "frames_bcthw":
            return record.value if self.video else _squeeze_time(record.value)
        return self.convert(record)

    def convert(self, record: Record) -> torch.Tensor:
        """Family-specific layouts (override in a subclass)."""
        raise ParityError(f"family {self.name!r} does not know layout {record.layout!r}")


def _squeeze_time(frames: torch.Tensor) -> torch.Tensor:
    if frames.ndim == 5 and frames.shape[2] == 1:
        return frames[:, :, 0]
    return frames
