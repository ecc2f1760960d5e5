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
    port_pooled_fields: further Req list fields to record (field, names), e.g. SD3's merged
        `pooled_embeds` -> ("pooled_prompt_embeds",).
    port_repeated_embeds: other Req list fields that repeat recorded tensors (field, names), e.g.
        Flux's `pooled_embeds` repeats `prompt_embeds[0]`; isolated mode overwrites them too.
    reference_encode_prompt: the canonical name of each item Diffusers' `encode_prompt`
        returns (None for items that are not compared, e.g. Flux's text_ids).
    latent_layout: the layout both libraries keep latents in during denoising
        ("canonical", or a family layout such as Flux's "packed", converted by `convert`).
    block_lists: module paths, inside the DiT and as Diffusers names them, of the block lists
        whose outputs are captured, in execution order (e.g. Flux's double then single blocks).
    block_outputs: the names of the items a block returns (e.g. Flux blocks return
        (encoder_hidden_states, hidden_states)); a single tensor is `hidden_states`.
    port_block_lists: the port's path for a block list whose path differs (default: the same
        path and index). A port that fuses or splits blocks overrides `block_name`.
    reference_timestep_scale / port_timestep_scale: multiply the timestep each side passes to
        its DiT into the scheduler's units (Diffusers' Flux passes t/1000, SGLang's passes t).
    reference_guidance_scale / port_guidance_scale: the same for the guidance input.
    reference_cfg_batch: "uncond_cond" when the reference runs both CFG branches as one DiT call
        on a batch of two, unconditional first (Diffusers' SD3); the recorder splits it.
    reference_cfg_scale_argument / port_cfg_scale_argument: the argument that carries the case's
        classifier-free guidance scale (`true_cfg_scale`) on each side: Flux's pipelines take
        `true_cfg_scale` beside an embedded `guidance_scale`; SD3's take CFG as `guidance_scale`.
    video: True when frames carry a time axis (B, C, T, H, W); images are (B, C, H, W).
    """

    name: str
    diffusers_classes: tuple[str, ...]
    sglang_model_id: str
    sglang_pipeline: str
    port_prompt_embeds: tuple[str, ...]
    port_negative_prompt_embeds: tuple[str, ...] = ()
    port_pooled_fields: tuple[tuple[str, tuple[str, ...]], ...] = ()
    port_repeated_embeds: tuple[tuple[str, tuple[str, ...]], ...] = ()
    reference_encode_prompt: tuple[str | None, ...] = ("prompt_embeds",)
    latent_layout: str = "canonical"
    block_lists: tuple[str, ...] = ()
    block_outputs: tuple[str, ...] = ("hidden_states",)
    port_block_lists: tuple[tuple[str, str], ...] = ()
    reference_timestep_scale: float = 1.0
    port_timestep_scale: float = 1.0
    reference_guidance_scale: float = 1.0
    port_guidance_scale: float = 1.0
    reference_cfg_batch: str | None = None
    reference_cfg_scale_argument: str = "true_cfg_scale"
    port_cfg_scale_argument: str = "true_cfg_scale"
    video: bool = False

    def block_list_path(self, side: str, reference_path: str) -> str:
        """Where a (Diffusers-named) block list lives on `side`."""
        if side == "port":
            return dict(self.port_block_lists).get(reference_path, reference_path)
        return reference_path

    def block_name(self, side: str, reference_path: str, index: int) -> str | None:
        """The reference block whose output block `index` of that list on `side` is compared with,
        or None to leave it out. Default: the same index. A port that fuses reference blocks 2i and
        2i+1 into its block i returns f"{reference_path}.{2 * index + 1}"; one that splits a block
        in two returns None for the first half and the reference block for the second."""
        return f"{reference_path}.{index}"

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
