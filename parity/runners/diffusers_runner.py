"""The reference: Diffusers' own pipeline, loaded from the model directory, with taps."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import torch

from parity import images, stages
from parity.cases import Case
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.inputs import pipeline_inputs
from parity.runners import RunInfo, RunOptions, qualified_name
from parity.runners.cache import PipelineCache
from parity.runners.recorder import DenoisingRecorder
from parity.runners.stage_taps import tap_encoder_inputs, tap_tokenizer, tap_vae_decode, text_encoders
from parity.runners.weights import check_model_dir
from parity.taps import Taps, first_tensor
from parity.trace import Trace
from parity.vocab import Side

_PIPELINES: PipelineCache[Any] = PipelineCache()


def _failed_component(exc: BaseException) -> str | None:
    """The pipeline component Diffusers was loading when `exc` was raised: the `name` of the
    innermost `load_sub_model` frame (pipelines/pipeline_loading_utils.py) in its traceback, or in
    the traceback of what it was raised from. Diffusers' own message often names none (a shape
    mismatch reads "Cannot load  because context_embedder.bias expected shape ...")."""
    seen: set[int] = set()
    pending: BaseException | None = exc
    while pending is not None and id(pending) not in seen:
        seen.add(id(pending))
        names = [
            frame.f_locals.get("name")
            for frame, _ in traceback.walk_tb(pending.__traceback__)
            if frame.f_code.co_name == "load_sub_model"
        ]
        if names and isinstance(names[-1], str):
            return names[-1]
        pending = pending.__cause__ or pending.__context__
    return None


def _load(model_dir: Path, case: Case, adapter: FamilyAdapter) -> Any:
    check_model_dir(model_dir)  # safetensors only, refused before Diffusers is imported (parity.runners.weights)
    import diffusers

    try:
        # use_safetensors=True reaches every model component (Diffusers' and transformers'), which then
        # raise rather than fall back to a pickle; parity.runners.weights says where that falls short.
        pipe = diffusers.DiffusionPipeline.from_pretrained(
            str(model_dir), torch_dtype=getattr(torch, case.dtype), local_files_only=True, use_safetensors=True
        )
    except Exception as exc:  # diffusers raises many types; all mean "cannot load this dir"
        component = _failed_component(exc)
        where = f"{component}/ of {model_dir}" if component else str(model_dir)
        # Diffusers' advice on a shape mismatch (load with ignore_mismatched_sizes=True, i.e. random
        # weights) is no way to run a parity check: left out.
        message = str(exc).split(" If you want to instead overwrite randomly initialized weights")[0]
        raise ParityError(f"Diffusers cannot load {where}: {type(exc).__name__}: {message}") from exc
    if type(pipe).__name__ not in adapter.diffusers_classes:
        raise ParityError(
            f"Diffusers loaded {type(pipe).__name__}, but family {adapter.name!r} expects "
            f"{', '.join(adapter.diffusers_classes)}"
        )
    pipe.to(case.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_inputs(case: Case, adapter: FamilyAdapter) -> dict[str, Any]:
    """The pipeline call's arguments for the case (parity.inputs), with Diffusers' own: the initial noise
    from a seeded CPU generator, as SGLang draws it, so both sides start from the same latents on any
    device; tensors out; the text encoders' max_sequence_length; the input image as a PIL image."""
    library = {
        "max_sequence_length": case.max_sequence_length,
        "generator": torch.Generator("cpu").manual_seed(case.seed),
        "output_type": "pt",
    }
    return pipeline_inputs(case, adapter, Side.REFERENCE, library, images.load)


class DiffusersRunner:
    """The reference side's Runner (see parity.runners.Runner)."""

    side = Side.REFERENCE
    last_info: RunInfo | None = None

    def load(self, model_dir: Path, case: Case, adapter: FamilyAdapter) -> Any:
        """The Diffusers pipeline for this directory, dtype and device; loaded once per process and
        reused by reruns, the isolated run, the referee and benchmarks (taps are removed after each run)."""
        key = (str(model_dir), case.dtype, case.device)
        return _PIPELINES.get(key, lambda: _load(model_dir, case, adapter))

    def bare(self, model_dir: Path, case: Case, adapter: FamilyAdapter) -> Any:
        """One call of the loaded pipeline with no taps (the benchmark's "Diffusers alone")."""
        pipe = self.load(model_dir, case, adapter)
        with torch.no_grad():
            return pipe(**call_inputs(case, adapter))

    def run(self, model_dir: Path, case: Case, adapter: FamilyAdapter, trace: Trace, options: RunOptions) -> RunInfo:
        pipe = self.load(model_dir, case, adapter)
        info = RunInfo(
            pipeline=qualified_name(pipe),
            components={name: qualified_name(module) for name, module in pipe.components.items() if module is not None},
        )
        self.last_info = info
        size: dict[str, Any] = {"height": case.height, "width": case.width}
        layout = adapter.latent_layout
        loop = DenoisingRecorder(trace, case, adapter, Side.REFERENCE, options)

        def on_encode_prompt(args: tuple, kwargs: dict, result: Any) -> None:
            prompt = kwargs.get("prompt", args[0] if args else None)
            prefix = "negative_" if case.negative_prompt is not None and prompt == case.negative_prompt else ""
            for name, value in zip(adapter.reference.encode_prompt, result, strict=False):
                if name is not None and value is not None:
                    trace.add(prefix + name, stages.TEXT_ENCODING, value)

        def encoder_recorder(names: tuple[str | None, ...]):
            def on_encode(args: tuple, kwargs: dict, result: Any) -> None:
                for name, value in zip(names, result if isinstance(result, tuple) else (result,), strict=False):
                    if name is not None and value is not None:
                        trace.add(name, stages.TEXT_ENCODING, value)

            return on_encode

        def module_recorder(names: tuple[str | None, ...]):
            # Under CFG the module may run on both prompts as one batch of two, in the reference's cfg_batch order.
            order = adapter.reference.cfg_batch if case.cfg_enabled else None
            cond = 0 if order == "cond_uncond" else 1

            def on_forward(args: tuple, kwargs: dict, result: Any) -> None:
                for name, value in zip(names, result if isinstance(result, tuple) else (result,), strict=False):
                    if name is None or not isinstance(value, torch.Tensor):
                        continue
                    if order in ("uncond_cond", "cond_uncond") and value.shape[0] == 2:
                        trace.add("negative_" + name, stages.TEXT_ENCODING, value[1 - cond : 2 - cond])
                        value = value[cond : cond + 1]
                    trace.add(name, stages.TEXT_ENCODING, value)

            return on_forward

        def latent_recorder(names: tuple[str | None, ...]):
            def on_prepare(args: tuple, kwargs: dict, result: Any) -> None:
                for name, value in zip(names, result if isinstance(result, tuple) else (result,), strict=False):
                    if name is not None and value is not None:
                        trace.add(name, stages.LATENT_PREPARATION, value)

            return on_prepare

        def on_prepare_latents(args: tuple, kwargs: dict, result: Any) -> None:
            trace.add("latents", stages.LATENT_PREPARATION, first_tensor(result), layout=layout, **size)
            # Further outputs the adapter names (e.g. a condition image's latents), in the layout returned.
            if isinstance(result, tuple):
                for name, value in zip(adapter.reference.prepare_latents[1:], result[1:], strict=False):
                    if name is not None and value is not None:
                        trace.add(name, stages.LATENT_PREPARATION, value)

        def on_set_timesteps(args: tuple, kwargs: dict, result: Any) -> None:
            # A schedule set once denoising has begun (a later chunk, a pyramid stage: Helios) is recorded
            # at the step it starts from; one set before the loop replaces any earlier one.
            step = loop.step or None
            trace.add("timesteps", stages.TIMESTEP_PREPARATION, pipe.scheduler.timesteps, step=step)
            trace.add("sigmas", stages.TIMESTEP_PREPARATION, pipe.scheduler.sigmas, step=step)

        with Taps() as taps:
            if adapter.encoder_input_ids:  # the ids as the text encoders receive them, not per tokenizer call
                for index, encoder in enumerate(text_encoders(pipe.components)):
                    tap_encoder_inputs(taps, encoder, index, trace)
            else:
                tokenizers = adapter.reference.tokenizers or sorted(
                    n for n, m in pipe.components.items() if n.startswith("tokenizer") and m
                )
                for index, name in enumerate(tokenizers):
                    tap_tokenizer(taps, pipe.components[name], index, trace, case.prompt, adapter=adapter)
            taps.wrap_method(pipe, "encode_prompt", on_encode_prompt)
            for method, names in adapter.reference.encoders:  # e.g. an image encoder's embeddings
                taps.wrap_method(pipe, method, encoder_recorder(names))
            for component, names in adapter.reference.text_modules:  # e.g. LTX-2's text connectors
                taps.forward_hook(pipe.components[component], module_recorder(names))
            for method, names in adapter.reference.latent_methods:  # e.g. LTX-2's audio latents
                taps.wrap_method(pipe, method, latent_recorder(names))
            taps.wrap_method(pipe, "prepare_latents", on_prepare_latents)
            taps.wrap_method(pipe.scheduler, "set_timesteps", on_set_timesteps)
            taps.wrap_method(pipe.scheduler, "step", loop.on_scheduler_step, before=loop.before_scheduler_step)
            loop.tap_dit(taps, pipe.transformer, adapter, Side.REFERENCE)
            tap_vae_decode(taps, pipe.vae, trace)
            inputs = call_inputs(case, adapter)
            with torch.no_grad():
                output = pipe(**inputs)
        frames = output.images if hasattr(output, "images") else output.frames
        if isinstance(frames, list) and all(isinstance(f, torch.Tensor) for f in frames):
            frames = torch.stack(frames)  # one tensor per prompt (Qwen-Image-Layered: its layers, T x C x H x W)
        frames = torch.as_tensor(frames).float()
        if frames.ndim == 5:  # Diffusers' video postprocessing with output_type="pt" gives B x T x C x H x W
            frames = frames.permute(0, 2, 1, 3, 4)
        trace.add("frames", stages.DECODING, frames, layout="frames_bcthw")
        if adapter.audio_output and getattr(output, "audio", None) is not None:
            trace.add("audio", stages.DECODING, torch.as_tensor(output.audio).float())
        return info
