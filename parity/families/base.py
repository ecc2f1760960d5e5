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
        on a batch of two, unconditional first (Diffusers' SD3), "cond_uncond" when conditional first
        (Diffusers' Z-Image); the recorder splits it.
    reference_cfg_scale_argument / port_cfg_scale_argument: the argument that carries the case's
        classifier-free guidance scale (`true_cfg_scale`) on each side: Flux's pipelines take
        `true_cfg_scale` beside an embedded `guidance_scale`; SD3's take CFG as `guidance_scale`.
    video: True when frames carry a time axis (B, C, T, H, W); images are (B, C, H, W).
    dit_guidance: False when the DiT has no embedded-guidance input, so `dit_guidance` is not
        recorded even if a side passes one that the DiT ignores (SGLang hands Wan's DiT its
        embedded_cfg_scale, which Wan's forward never reads).
    reference_dit_arguments / port_dit_arguments: the DiT forward's parameter names of its latents,
        timestep and guidance inputs, found by position or keyword through the forward's signature
        (Diffusers' Z-Image DiT is called positionally as (x, t, cap_feats)).
    reference_timestep_offset / port_timestep_offset: added after the timestep scale (Diffusers'
        Z-Image passes (1000 - t) / 1000: scale -1000, offset 1000).
    reference_dit_output_scale / port_dit_output_scale: multiply each side's DiT output into the sign
        and units of the prediction the scheduler receives (Diffusers' Z-Image pipeline negates its
        DiT's output, SGLang's Z-Image DiT negates inside).
    block_inputs: the block forward's parameter names that carry `block_outputs` into the block, by
        position or keyword (default: the same names; Z-Image's blocks take `x` positionally).
    block_lists_chained: False when every block list starts from inputs of its own instead of the
        previous list's output (Z-Image: the image refiner, the caption refiner, then the main blocks
        on their concatenation); the first block of each later list then records its input as block
        "<list>:input", which isolated mode feeds it.
    prompt_templates: format strings ("{}" = the prompt) a side wraps the prompt in before
        tokenizing (Qwen-Image's chat template); the tokenizer tap knows the prompt through them.
    unpadded_tokens: True when the tokenizer's padding never reaches the DiT (the pipelines keep
        only the attention-masked tokens' hidden states: Qwen-Image), so `input_ids` and
        `attention_mask` are recorded without padding (the libraries pad to different lengths).
    reference_image_argument / port_image_argument: the pipeline argument that takes the case's
        input image: Diffusers' image-conditioned pipelines take a PIL `image`, SGLang an `image_path`.
    call_inputs: further pipeline inputs set by name on both sides, for inputs whose defaults differ
        between the libraries (Z-Image's cfg_normalization: off in Diffusers, on in SGLang).
    reference_tokenizers / port_tokenizers: what is tapped as tokenizer 0, 1, ...: Diffusers pipeline
        components / attributes of SGLang stages (default: the components named `tokenizer*` / each
        stage's `tokenizers`); a multimodal processor that tokenizes the templated prompt with the image
        tokens expanded (Qwen-Image-Edit: ("processor",) / ("image_processor",)) is tapped like one.
    reference_prepare_latents: the canonical name of each item Diffusers' `prepare_latents` returns
        (None: not compared); the first is the initial noise `latents`, e.g. Qwen-Image-Edit's
        ("latents", "image_latents") adds the condition image's latents.
    port_latent_fields: further Req fields recorded at latent preparation, as (field, name), e.g.
        ("image_latent", "image_latents"); compared in the layout both sides keep them, and replaced
        by the reference's in isolated mode.
    reference_encoders: further Diffusers pipeline methods whose outputs are recorded at text encoding,
        as (method, the canonical name of each item it returns; a lone tensor is one item), e.g. Wan
        I2V's ("encode_image", ("image_embeds",)); the port's side is a `port_pooled_fields` entry.
    port_text_fields: further tensor Req fields recorded at text encoding, as (field, name), when first
        set, and replaced by the reference's in isolated mode (the port's side of a `reference_encoders`
        entry that the Req keeps as a tensor, not a list: GLM-Image's ("prior_token_id", "prior_token_ids")).
    sglang_model_path_alias: a directory name SGLang must see in the model path, for a family SGLang
        registers only by a name detector on the path and no hub id, so that no `sglang_model_id`
        selects it (GLM-Image: `"glm-image" in path`): the runner hands SGLang a symlink of that name to
        the model directory (a work-around for SGLang's registry; the native resolution is still checked).
    reference_num_frames_argument / port_num_frames_argument: the pipeline argument that carries the
        case's `num_frames` on each side (Diffusers' Qwen-Image-Layered takes its layer count as `layers`).
    input_image_mode: the PIL mode the case's input image is given in to both sides (Qwen-Image-Layered's
        VAE reads RGBA: Diffusers takes the PIL image as is, SGLang converts its file to RGBA itself).
    reference_omitted_arguments: the harness's usual pipeline arguments that the Diffusers pipeline does not
        take, left out of its call (Qwen-Image-Layered sizes its output from the input image: no height/width).
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
    dit_guidance: bool = True
    reference_dit_arguments: tuple[str, str, str] = ("hidden_states", "timestep", "guidance")
    port_dit_arguments: tuple[str, str, str] = ("hidden_states", "timestep", "guidance")
    reference_timestep_offset: float = 0.0
    port_timestep_offset: float = 0.0
    reference_dit_output_scale: float = 1.0
    port_dit_output_scale: float = 1.0
    block_inputs: tuple[str, ...] | None = None
    block_lists_chained: bool = True
    call_inputs: tuple[tuple[str, object], ...] = ()
    reference_image_argument: str = "image"
    port_image_argument: str = "image_path"
    prompt_templates: tuple[str, ...] = ()
    unpadded_tokens: bool = False
    reference_tokenizers: tuple[str, ...] = ()
    port_tokenizers: tuple[str, ...] = ()
    reference_prepare_latents: tuple[str | None, ...] = ("latents",)
    port_latent_fields: tuple[tuple[str, str], ...] = ()
    reference_encoders: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    port_text_fields: tuple[tuple[str, str], ...] = ()
    sglang_model_path_alias: str | None = None
    reference_num_frames_argument: str = "num_frames"
    port_num_frames_argument: str = "num_frames"
    input_image_mode: str = "RGB"
    reference_omitted_arguments: tuple[str, ...] = ()

    def prompt_texts(self, prompt: str) -> set[str]:
        """The texts a tokenizer may receive for the prompt (others are the negative prompt's): the
        prompt and its `prompt_templates` wrappings; a family whose encoder tokenizes text extracted
        from the prompt (GLM-Image's quoted glyph texts) adds those."""
        return {prompt, *(template.format(prompt) for template in self.prompt_templates)}

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
