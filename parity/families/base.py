"""What the harness must know about one model family, declared in one small adapter."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from parity import stages
from parity.errors import ParityError
from parity.trace import Record
from parity.vocab import Side


@dataclass(frozen=True, kw_only=True)
class SideSpec:
    """What one side (the Diffusers reference or the SGLang port) does differently, for the facts both
    sides have; `ReferenceSpec` and `PortSpec` add each side's own. Defaults are the usual values.

    timestep_scale: multiplies the timestep this side passes to its DiT into the scheduler's units
        (Diffusers' Flux passes t/1000, SGLang's passes t).
    timestep_offset: added after the timestep scale (Diffusers' Z-Image passes (1000 - t) / 1000:
        scale -1000, offset 1000).
    guidance_scale: the same as timestep_scale for the guidance input.
    dit_arguments: the DiT forward's parameter names of its latents, timestep and guidance inputs,
        found by position or keyword through the forward's signature (Diffusers' Z-Image DiT is called
        positionally as (x, t, cap_feats)).
    dit_output_scale: multiplies this side's DiT output into the sign and units of the prediction the
        scheduler receives (Diffusers' Z-Image pipeline negates its DiT's output, SGLang's Z-Image DiT
        negates inside).
    cfg_scale_argument: the argument that carries the case's classifier-free guidance scale
        (`true_cfg_scale`) on this side: Flux's pipelines take `true_cfg_scale` beside an embedded
        `guidance_scale`; SD3's take CFG as `guidance_scale`.
    image_argument: the pipeline argument that takes the case's input image: Diffusers' image-conditioned
        pipelines take a PIL `image`, SGLang an `image_path` (the two sides' defaults).
    num_frames_argument: the pipeline argument that carries the case's `num_frames` on this side
        (Diffusers' Qwen-Image-Layered takes its layer count as `layers`).
    tokenizers: what is tapped as tokenizer 0, 1, ...: Diffusers pipeline components / attributes of
        SGLang stages (default: the components named `tokenizer*` / each stage's `tokenizers`); a
        multimodal processor that tokenizes the templated prompt with the image tokens expanded
        (Qwen-Image-Edit: ("processor",) / ("image_processor",)) is tapped like one.
    call_inputs: further pipeline inputs set on this side only, by name: arguments only this side's
        pipeline takes, whose default turns on a feature the other side lacks (Diffusers' Sana prepends
        a "complex human instruction" to the prompt and bins the size to an aspect-ratio table; SGLang's
        SanaPipeline has neither, and its SamplingParams reject unknown names). Inputs both sides take
        are `FamilyAdapter.call_inputs`.
    block_inputs: this side's block forward parameter names that carry `block_outputs` into a block,
        where they differ from the other side's (default: `FamilyAdapter.block_inputs`): SGLang's
        HunyuanVideo dual-stream blocks take (img, txt) for Diffusers' (hidden_states, encoder_hidden_states).
    joined_blocks: (Diffusers' block-list path, parameter, length parameter) for a list whose blocks on
        this side take and return the two `block_outputs` joined along the token axis, in that order, as one
        tensor, where the other side keeps them apart; the block's length parameter is the second one's
        token count. The recorder splits the joined output (and input) into the two names, and isolated
        mode joins the reference's two: SGLang's HunyuanVideo single-stream blocks take x = cat(image,
        text) and txt_len, and return x; Diffusers' return (hidden_states, encoder_hidden_states).
    """

    timestep_scale: float = 1.0
    timestep_offset: float = 0.0
    guidance_scale: float = 1.0
    dit_arguments: tuple[str, str, str] = ("hidden_states", "timestep", "guidance")
    dit_output_scale: float = 1.0
    cfg_scale_argument: str = "true_cfg_scale"
    image_argument: str  # each side's default is in its subclass
    num_frames_argument: str = "num_frames"
    tokenizers: tuple[str, ...] = ()
    call_inputs: tuple[tuple[str, object], ...] = ()
    block_inputs: tuple[str, ...] | None = None
    joined_blocks: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class ReferenceSpec(SideSpec):
    """The reference side: Diffusers' pipeline (beside `SideSpec`'s facts).

    encode_prompt: the canonical name of each item Diffusers' `encode_prompt` returns (None for items
        that are not compared, e.g. Flux's text_ids).
    cfg_batch: "uncond_cond" when the reference runs both CFG branches as one DiT call on a batch of
        two, unconditional first (Diffusers' SD3), "cond_uncond" when conditional first (Diffusers'
        Z-Image); the recorder splits it.
    prepare_latents: the canonical name of each item Diffusers' `prepare_latents` returns (None: not
        compared); the first is the initial noise `latents`, e.g. Qwen-Image-Edit's
        ("latents", "image_latents") adds the condition image's latents.
    encoders: further Diffusers pipeline methods whose outputs are recorded at text encoding, as
        (method, the canonical name of each item it returns; a lone tensor is one item), e.g. Wan I2V's
        ("encode_image", ("image_embeds",)); the port's side is a `PortSpec.pooled_fields` entry.
    omitted_arguments: the harness's usual pipeline arguments that the Diffusers pipeline does not take,
        left out of its call (Qwen-Image-Layered sizes its output from the input image: no height/width).
    text_modules: pipeline components (modules) whose forward outputs are recorded at text encoding after
        `encode_prompt`, as (component, the canonical name of each item it returns), replacing earlier
        records of those names, for a pipeline that turns the encoder's output into the DiT's prompt
        embeddings in a module its `__call__` runs (LTX-2's `connectors` -> ("prompt_embeds",
        "audio_prompt_embeds", None)); under CFG a batch of two is split in `cfg_batch` order into
        `negative_<name>` and `<name>`. The port's side is the Req field its stage overwrites.
    latent_methods: further Diffusers pipeline methods whose outputs are recorded at latent preparation, as
        (method, the canonical name of each item it returns), e.g. LTX-2's ("prepare_audio_latents",
        ("audio_latents",)); the port's side is a `PortSpec.latent_fields` entry.
    replay_floor_arguments: DiT call arguments the reference computes outside the call in float32 where the port
        computes them inside: the float64 audit's floor replay moves them by one float32 rounding too, so the
        floor covers the reference's own rounding of them (Diffusers' LTX-2 pipeline builds the RoPE coordinates,
        1/24 s steps, and passes `video_coords` / `audio_coords`; SGLang's DiT builds them itself).
    """

    image_argument: str = "image"
    encode_prompt: tuple[str | None, ...] = ("prompt_embeds",)
    cfg_batch: str | None = None
    prepare_latents: tuple[str | None, ...] = ("latents",)
    encoders: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    omitted_arguments: tuple[str, ...] = ()
    text_modules: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    latent_methods: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    replay_floor_arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class SequenceShards:
    """Which of the port's records a sequence-parallel rank may hold only a shard of, and along which
    dimension (parity.rank_merge puts them together; whether a record is a shard is then read from
    its length). Default: block records (SGLang splits the tokens inside the DiT: Wan).

    dim: the sequence dimension of those records, in the layout the port records them.
    blocks: block outputs and block inputs may be shards.
    denoising: denoising-loop tensors that may be shards, for a port that splits its latents before
        the loop (Qwen-Image: the DiT's input and outputs and the scheduler's input and output).
    """

    dim: int = 1
    blocks: bool = True
    denoising: tuple[str, ...] = ()

    def may_shard(self, record: Record) -> bool:
        if record.key.block is not None:
            return self.blocks
        return record.stage == stages.DENOISING and record.key.tensor in self.denoising


@dataclass(frozen=True, kw_only=True)
class PortSpec(SideSpec):
    """The port side: SGLang's native pipeline and its `Req` contract (beside `SideSpec`'s facts).

    model_id: the model id that makes SGLang resolve its native pipeline for a local dir (a local
        directory name does not match SGLang's registry: see docs/how-it-works.md, "The fallback trap").
    pipeline: the native SGLang pipeline class the port must resolve to.
    prompt_embeds / negative_prompt_embeds: the canonical name of each element of the port's
        `Req.prompt_embeds` / `Req.negative_prompt_embeds` lists.
    pooled_fields: further Req list fields to record (field, names), e.g. SD3's merged
        `pooled_embeds` -> ("pooled_prompt_embeds",).
    repeated_embeds: other Req list fields that repeat recorded tensors (field, names), e.g. Flux's
        `pooled_embeds` repeats `prompt_embeds[0]`; isolated mode overwrites them too.
    block_lists: the port's path for a block list whose path differs, as (Diffusers' path, the port's
        path) (default: the same path and index). A port that fuses or splits blocks overrides
        `FamilyAdapter.block_name`.
    latent_fields: further Req fields recorded at latent preparation, as (field, name), e.g.
        ("image_latent", "image_latents"); compared in the layout both sides keep them, and replaced by
        the reference's in isolated mode.
    text_fields: further tensor Req fields recorded at text encoding, as (field, name), when first set,
        and replaced by the reference's in isolated mode (the port's side of a `ReferenceSpec.encoders`
        entry that the Req keeps as a tensor, not a list: GLM-Image's ("prior_token_id", "prior_token_ids")).
    sequence_shards: which records a sequence-parallel rank holds shards of (`SequenceShards`).
    model_path_alias: a directory name SGLang must see in the model path, for a family SGLang registers
        only by a name detector on the path and no hub id, so that no `model_id` selects it (GLM-Image:
        `"glm-image" in path`): the runner hands SGLang a symlink of that name to the model directory
        (a work-around for SGLang's registry; the native resolution is still checked).
    denoising_scheduler: the pipeline module of a scheduler that the port's denoising stage sets up
        itself (no timestep stage, no `Req.timesteps`: Helios' chunked denoising calls its
        `set_timesteps` per chunk); the runner taps that module's `set_timesteps` (the schedule, replaced
        by the reference's in isolated mode) and `step`.
    noise_in_denoising: methods of the port's denoising stage that receive, as their `latents` argument,
        initial noise the stage drew itself (Helios' HeliosChunkedDenoisingStage draws each chunk's noise
        and hands it to `_denoise_one_chunk`, or `_denoise_one_chunk_stage2` for the pyramid): the first
        call's `latents` are the port's `latents` (replaced by the reference's in isolated mode), and
        `Req.latents` after latent preparation, which such a port never denoises, is not recorded.
    frames_layout: how SGLang's `OutputBatch.output` holds the decoded frames: "bcthw" (a (B, C, T, H, W)
        tensor in [0, 1], SGLang's usual) or "bthwc" (frames last, numpy or tensor: LTX-2's decoding stage
        returns the video processor's numpy frames).
    precision_fields: further SGLang pipeline-config fields that hold a precision ("fp32", "bf16"), set
        to the case's dtype beside dit_precision (HeliosT2VConfig.precision, default bf16, is the dtype
        Helios' denoising stage casts the DiT's inputs to, whatever dit_precision says); the report notes it.
    replay_dit_attributes: attributes set on SGLang's DiT for the runs that replay it in float64 (the fp64
        referee's, `--audit fp64`'s): a cache the library fills in the run dtype outside the DiT call turned
        off, so the replayed call computes it (SGLang's LTX-2 projects every block's prompt K/V before the loop
        and calls its DiT without the prompt embeddings: `caches_prompt_kv=False` keeps them in the call).
    config_inputs: names of `FamilyAdapter.call_inputs` that SGLang reads from its pipeline config, not from
        the request: set as ServerArgs keywords when the pipeline is built and left out of the request
        (Helios' pyramid steps per stage: a call argument in Diffusers, HeliosMidConfig's
        pyramid_num_inference_steps_list in SGLang).
    """

    image_argument: str = "image_path"
    model_id: str | None
    pipeline: str
    prompt_embeds: tuple[str, ...]
    negative_prompt_embeds: tuple[str, ...] = ()
    pooled_fields: tuple[tuple[str, tuple[str, ...]], ...] = ()
    repeated_embeds: tuple[tuple[str, tuple[str, ...]], ...] = ()
    block_lists: tuple[tuple[str, str], ...] = ()
    latent_fields: tuple[tuple[str, str], ...] = ()
    text_fields: tuple[tuple[str, str], ...] = ()
    model_path_alias: str | None = None
    sequence_shards: SequenceShards = SequenceShards()
    denoising_scheduler: str | None = None
    noise_in_denoising: tuple[str, ...] = ()
    precision_fields: tuple[str, ...] = ()
    frames_layout: str = "bcthw"
    config_inputs: tuple[str, ...] = ()
    replay_dit_attributes: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, kw_only=True)
class FamilyAdapter:
    """Declarative facts about a family, plus layout conversions to the canonical layout.

    What differs between the two sides is read in one place per side: `reference` (a `ReferenceSpec`)
    and `port` (a `PortSpec`), or `side(Side.REFERENCE | Side.PORT)`. The facts below hold for both.

    name: the family name users pass as --family.
    diffusers_classes: model_index.json `_class_name`s this family covers (Diffusers side).
    latent_layout: the layout both libraries keep latents in during denoising
        ("canonical", or a family layout such as Flux's "packed", converted by `convert`).
    block_lists: module paths, inside the DiT and as Diffusers names them, of the block lists
        whose outputs are captured, in execution order (e.g. Flux's double then single blocks);
        a port whose lists live elsewhere declares its paths in `PortSpec.block_lists`.
    block_outputs: the names of the items a block returns (e.g. Flux blocks return
        (encoder_hidden_states, hidden_states)); a single tensor is `hidden_states`.
    block_list_outputs: (Diffusers' list path, names) for a block list whose blocks return other items
        than `block_outputs`; each name is also the block forward's parameter that takes it in
        (`block_inputs` does not apply to that list). FLUX.2's single-stream blocks return one tensor,
        the joint text + image stream, taken in as `hidden_states`.
    video: True when frames carry a time axis (B, C, T, H, W); images are (B, C, H, W).
    time_embedding_inputs: True to record what the DiT's sinusoidal time embeddings receive, per call
        within a DiT call (`dit_time_embedding_input.<k>`): modules of a class named `Timesteps`
        (Diffusers' and SGLang's subclass of it), called in the same order on both sides (Flux: the
        timestep, then the guidance). The value a DiT is conditioned on, in the same units on both sides.
    replay_keeps_float32: names of parameters (the last part of their path) that the float64 replay (the
        fp64 referee, `--audit fp64`) leaves in their dtype, and then the libraries' explicit float32 casts
        too instead of promoting them to float64: SGLang's Wan block asserts its modulation is float32
        (`wanvideo.py`: `e = self.scale_shift_table + temb.float()`, `assert shift_msa.dtype == torch.float32`);
        Diffusers' Wan computes the same sum the same way, so both round it alike.
    dit_guidance: False when the DiT has no embedded-guidance input, so `dit_guidance` is not
        recorded even if a side passes one that the DiT ignores (SGLang hands Wan's DiT its
        embedded_cfg_scale, which Wan's forward never reads).
    block_inputs: the block forward's parameter names that carry `block_outputs` into the block, by
        position or keyword (default: the same names; Z-Image's blocks take `x` positionally).
    block_lists_chained: False when every block list starts from inputs of its own instead of the
        previous list's output (Z-Image: the image refiner, the caption refiner, then the main blocks
        on their concatenation); the first block of each later list then records its input as block
        "<list>:input", which isolated mode feeds it.
    call_inputs: further pipeline inputs set by name on both sides, for inputs whose defaults differ
        between the libraries (Z-Image's cfg_normalization: off in Diffusers, on in SGLang).
    prompt_templates: format strings ("{}" = the prompt) a side wraps the prompt in before
        tokenizing (Qwen-Image's chat template); the tokenizer tap knows the prompt through them.
    unpadded_tokens: True when the tokenizer's padding never reaches the DiT (the pipelines keep
        only the attention-masked tokens' hidden states: Qwen-Image), so `input_ids` and
        `attention_mask` are recorded without padding (the libraries pad to different lengths).
    audio_output: True when the pipelines also return an audio waveform (LTX-2), recorded at decoding as
        `audio` (Diffusers' output `.audio`, SGLang's `OutputBatch.audio`: (B, channels, samples)).
    input_image_mode: the PIL mode the case's input image is given in to both sides (Qwen-Image-Layered's
        VAE reads RGBA: Diffusers takes the PIL image as is, SGLang converts its file to RGBA itself).
    encoder_input_ids: True when `input_ids` / `attention_mask` are recorded as each text encoder's forward
        receives them (the pipeline component `text_encoder*` i is encoder i; its first call is the prompt's,
        the second the negative prompt's) instead of from tokenizer calls: for pipelines that assemble the
        ids from several tokenizer calls (LongCat: the prompt in pieces, quoted text character by character,
        padded to 512, between a separately tokenized chat-template prefix and suffix). Isolated mode feeds
        the encoder the reference's ids and mask.
    """

    name: str
    diffusers_classes: tuple[str, ...]
    reference: ReferenceSpec = ReferenceSpec()
    port: PortSpec
    latent_layout: str = "canonical"
    block_lists: tuple[str, ...] = ()
    block_outputs: tuple[str, ...] = ("hidden_states",)
    block_list_outputs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    video: bool = False
    dit_guidance: bool = True
    time_embedding_inputs: bool = False
    replay_keeps_float32: tuple[str, ...] = ()
    block_inputs: tuple[str, ...] | None = None
    block_lists_chained: bool = True
    call_inputs: tuple[tuple[str, object], ...] = ()
    prompt_templates: tuple[str, ...] = ()
    unpadded_tokens: bool = False
    input_image_mode: str = "RGB"
    audio_output: bool = False
    encoder_input_ids: bool = False

    def side(self, side: Side) -> SideSpec:
        """The spec of `side`: `reference` (a ReferenceSpec) or `port` (a PortSpec)."""
        if side == Side.REFERENCE:
            return self.reference
        if side == Side.PORT:
            return self.port
        raise ParityError(f"unknown side {side!r}: {Side.REFERENCE} or {Side.PORT}")

    def prompt_texts(self, prompt: str) -> set[str]:
        """The texts a tokenizer may receive for the prompt (others are the negative prompt's): the
        prompt and its `prompt_templates` wrappings; a family whose encoder tokenizes text extracted
        from the prompt (GLM-Image's quoted glyph texts) adds those."""
        return {prompt, *(template.format(prompt) for template in self.prompt_templates)}

    def block_list_path(self, side: Side, reference_path: str) -> str:
        """Where a (Diffusers-named) block list lives on `side`."""
        if side == Side.PORT:
            return dict(self.port.block_lists).get(reference_path, reference_path)
        return reference_path

    def block_name(self, side: Side, reference_path: str, index: int) -> str | None:
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
