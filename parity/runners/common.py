"""Taps both runners share: tokenizers (transformers objects on both sides), the denoising loop,
the VAE decode; and, in isolated mode, the teacher that feeds the port the reference's values."""

from __future__ import annotations

from typing import Any

import torch

from parity import stages
from parity.cases import Case
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.referee import FP64
from parity.runners import RunOptions
from parity.taps import Taps, argument, first_tensor
from parity.trace import Key, Trace

EMBEDDERS = stages.EMBEDDERS


def to_double(value: Any) -> Any:
    """Floating tensors to float64 (complex to complex128), through tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            return value.to(torch.complex128)
        return value.double() if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(to_double(v) for v in value)
    if isinstance(value, dict):
        return {k: to_double(v) for k, v in value.items()}
    return value


def replay_fp64(module: Any, args: tuple, kwargs: dict) -> Any:
    """The module's output on the same call with its weights and inputs in float64.

    Cast in place and cast back (float64 holds every fp32/bf16 value exactly, so the round trip
    is lossless): a copy is not possible, SGLang modules hold process groups.
    """
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    dtypes = {name: t.dtype for name, t in tensors}
    module.double()
    device = next(iter(dtypes and module.parameters()), torch.empty(0)).device.type
    try:
        # The library may run its DiT under autocast (SGLang can): float64 means no autocast.
        with torch.no_grad(), torch.autocast(device_type=device, enabled=False):
            return module.forward(*to_double(args), **to_double(kwargs))
    finally:
        for name, t in tensors:
            t.data = t.data.to(dtypes[name])


class Teacher:
    """The reference's recorded values, handed to the port in isolated (teacher-forced) mode so
    that every port component is judged on the reference's inputs, free of upstream drift."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace

    def get(self, tensor: str, step: int | None = None, block: str | None = None, like: Any = None) -> Any:
        """The reference value, on `like`'s device and dtype; None when absent or shaped differently."""
        record = self.trace.get(Key(tensor, step, block))
        if record is None:
            return None
        value = record.value
        if isinstance(like, torch.Tensor):
            if tuple(value.shape) != tuple(like.shape):
                return None
            value = value.to(device=like.device, dtype=like.dtype)
        return value


def replace_argument(args: tuple, kwargs: dict, index: int, name: str, value: Any) -> tuple[tuple, dict]:
    if value is None:
        return args, kwargs
    if len(args) > index:
        return (*args[:index], value, *args[index + 1 :]), kwargs
    return args, {**kwargs, name: value}


def replace_first(result: Any, value: Any) -> Any:
    """`result` with its main tensor replaced (a tuple's first item, or the tensor itself)."""
    if value is None:
        return None
    if isinstance(result, tuple):
        return (value, *result[1:])
    return value


def tap_tokenizer(
    taps: Taps, tokenizer: Any, index: int, trace: Trace, prompt: str, teacher: Teacher | None = None
) -> None:
    """Record `input_ids.<index>` / `attention_mask.<index>` of the first call per text; with a
    teacher, the encoder then receives the reference's ids and mask.

    Only the first call per text counts: Diffusers tokenizes a second time with padding="longest"
    just to warn about truncation, and that call does not feed the encoder. Any text other than
    the prompt is the negative prompt (the case's, or a library default when the case sets none),
    recorded as `negative_...`, so it can never overwrite the prompt's ids.
    """
    seen: set[str] = set()

    def on_call(args: tuple, kwargs: dict, result: Any) -> Any:
        text = argument(args, kwargs, 0, "text")
        text = text[0] if isinstance(text, (list, tuple)) and len(text) == 1 else text
        if not isinstance(text, str) or text in seen:
            return None
        seen.add(text)
        prefix = "" if text == prompt else "negative_"
        for field in ("input_ids", "attention_mask"):
            value = result.get(field) if hasattr(result, "get") else None
            if value is None:
                continue
            tensor = torch.as_tensor(value)
            # Batch-first on both sides, whether the library asked for tensors or lists.
            tensor = tensor.unsqueeze(0) if tensor.ndim == 1 else tensor
            name = f"{prefix}{field}.{index}"
            trace.add(name, stages.TEXT_ENCODING, tensor)
            if teacher is not None and isinstance(value, torch.Tensor):
                reference = teacher.get(name, like=value)
                if reference is not None:
                    result[field] = reference
        return None

    taps.hook_call(tokenizer, on_call)


def tap_vae_decode(taps: Taps, vae: Any, trace: Trace, teacher: Teacher | None = None) -> None:
    """Record what goes into `vae.decode(z)` as `vae_input`; with a teacher, decode the reference's."""

    def before(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        z = argument(args, kwargs, 0, "z")
        trace.add("vae_input", stages.DECODING, z)
        reference = teacher.get("vae_input", like=z) if teacher else None
        return replace_argument(args, kwargs, 0, "z", reference)

    taps.wrap_method(vae, "decode", lambda args, kwargs, result: None, before=before)


class DenoisingRecorder:
    """Names what the denoising loop produces, per step, the same way on both sides.

    Per step, in execution order: the DiT's inputs on its first call (`dit_input` latents,
    `dit_timestep` and `dit_guidance` in the scheduler's units), on captured steps the embedded
    inputs of the first block (block `embedders`) and every block's outputs (conditional branch
    only), the DiT outputs per CFG branch (`noise_pred_cond`, `noise_pred_uncond`; both libraries
    run the conditional branch first), the prediction the scheduler step receives (`noise_pred`:
    the guided one under CFG) and the scheduler step's output (`latents`), which ends the step.

    With a teacher (isolated mode) each component gets the reference's inputs and its own output
    is recorded, then replaced by the reference's, so the next component starts clean too.
    Blocks are re-run on the reference's block inputs beside the normal flow.
    """

    def __init__(self, trace: Trace, case: Case, adapter: FamilyAdapter, side: str, options: RunOptions) -> None:
        self.trace = trace
        self.cfg = case.cfg_enabled
        self.layout = adapter.latent_layout
        self.size = {"height": case.height, "width": case.width}
        self.block_outputs = adapter.block_outputs
        self.block_steps = options.block_steps
        self.teacher = Teacher(options.teacher) if options.teacher is not None else None
        port = side == "port"
        self.timestep_scale = adapter.port_timestep_scale if port else adapter.reference_timestep_scale
        self.guidance_scale = adapter.port_guidance_scale if port else adapter.reference_guidance_scale
        # The reference may run both CFG branches as one call on a batch of two (uncond, cond):
        # record the conditional half of inputs and blocks, and split the output.
        self.batched = not port and self.cfg and adapter.reference_cfg_batch == "uncond_cond"
        self.replay_step = options.replay_step
        self.replaying = False
        self.transformer: Any = None
        self.block_order: list[str] = []
        self.step = 0
        self.calls_this_step = 0

    def _cond(self, value: Any) -> Any:
        return value[1:2] if self.batched and isinstance(value, torch.Tensor) and value.shape[0] == 2 else value

    def _add(self, name: str, value: Any, layout: str | None = None) -> None:
        layout = self.layout if layout is None else layout
        value = self._cond(value) if name not in ("noise_pred_uncond", "latents", "noise_pred") else value
        self.trace.add(name, stages.DENOISING, value, step=self.step, layout=layout, **self.size)

    def _reference(self, name: str, like: Any, block: str | None = None) -> Any:
        return self.teacher.get(name, self.step, block, like=like) if self.teacher else None

    def on_dit_inputs(self, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.calls_this_step:
            return None  # the unconditional branch sees the same latents and timestep
        latents = argument(args, kwargs, 0, "hidden_states")
        self._add("dit_input", latents)
        args, kwargs = replace_argument(args, kwargs, 0, "hidden_states", self._reference("dit_input", latents))
        for name, key, scale in (
            ("dit_timestep", "timestep", self.timestep_scale),
            ("dit_guidance", "guidance", self.guidance_scale),
        ):
            value = kwargs.get(key)
            if isinstance(value, torch.Tensor):
                self._add(name, value.double() * scale, layout="canonical")
                reference = self._reference(name, value.double())
                if reference is not None:
                    kwargs = {**kwargs, key: (reference / scale).to(value.dtype)}
        return args, kwargs

    def on_dit(self, args: tuple, kwargs: dict, output: Any) -> Any:
        if self.step == self.replay_step and not self.calls_this_step:
            self.replaying = True  # the replay runs the blocks again: their hooks stay quiet
            try:
                replayed = first_tensor(replay_fp64(self.transformer, args, kwargs))
            finally:
                self.replaying = False
            self._add(("noise_pred_cond" if self.cfg else "noise_pred") + FP64, replayed)
        if self.batched:
            prediction = first_tensor(output)
            self._add("noise_pred_cond", prediction[1:2])
            self._add("noise_pred_uncond", prediction[0:1])
            self.calls_this_step += 1
            return None
        if self.cfg:
            name = ("noise_pred_cond", "noise_pred_uncond")[min(self.calls_this_step, 1)]
        elif self.teacher is not None:
            name = "noise_pred"  # the port's DiT on the reference's inputs, before the teacher's replaces it
        else:
            name = None  # without CFG the DiT output is what the scheduler receives: recorded there
        self.calls_this_step += 1
        if name is None:
            return None
        prediction = first_tensor(output)
        self._add(name, prediction)
        return replace_first(output, self._reference(name, prediction))

    def before_scheduler_step(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        prediction = argument(args, kwargs, 0, "model_output")
        if self.teacher is None or self.cfg:  # under teacher without CFG, on_dit recorded it
            self._add("noise_pred", prediction)
        args, kwargs = replace_argument(args, kwargs, 0, "model_output", self._reference("noise_pred", prediction))
        sample = argument(args, kwargs, 2, "sample")
        return replace_argument(args, kwargs, 2, "sample", self._reference("dit_input", sample))

    def on_scheduler_step(self, args: tuple, kwargs: dict, result: Any) -> Any:
        latents = first_tensor(result)
        self._add("latents", latents)
        replacement = replace_first(result, self._reference("latents", latents))
        self.step += 1
        self.calls_this_step = 0
        return replacement

    def _captures(self) -> bool:
        return self.step in self.block_steps and not self.calls_this_step and not self.replaying

    def _record_block(self, block: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                self.trace.add(name, stages.DENOISING, self._cond(value), step=self.step, block=block)

    def embedders_hook(self, args: tuple, kwargs: dict) -> None:
        if self._captures():
            self._record_block(EMBEDDERS, {name: kwargs.get(name) for name in self.block_outputs})

    def block_hook(self, block: str, module: Any):
        position = len(self.block_order)
        self.block_order.append(block)

        def on_block(args: tuple, kwargs: dict, output: Any) -> None:
            if not self._captures():
                return
            if self.teacher is not None:
                kwargs = self._reference_block_inputs(position, args, kwargs)
                with torch.no_grad():
                    output = module.forward(*args, **kwargs)
            self._record_block(block, self._named(output))
            if self.step == self.replay_step:
                self.replaying = True
                try:
                    replayed = self._named(replay_fp64(module, args, kwargs))
                finally:
                    self.replaying = False
                self._record_block(block, {name + FP64: value for name, value in replayed.items()})

        return on_block

    def _named(self, output: Any) -> dict[str, Any]:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        return dict(zip(self.block_outputs, outputs, strict=False))

    def _reference_block_inputs(self, position: int, args: tuple, kwargs: dict) -> dict:
        """The block's kwargs with the reference's input for this block (the previous reference
        block's output, or the reference's embedded inputs for the first block). The block is then
        run again on them beside the normal flow, which is left alone."""
        source = EMBEDDERS if position == 0 else self.block_order[position - 1]
        inputs = {name: self._reference(name, kwargs.get(name), block=source) for name in self.block_outputs}
        if args or any(v is None for v in inputs.values()):
            raise ParityError(
                f"isolated mode cannot feed block {self.block_order[position]} the reference's input "
                "(block called positionally, or the reference recorded no input for it)"
            )
        return {**kwargs, **inputs}

    def tap_dit(self, taps: Taps, transformer: Any, adapter: FamilyAdapter, side: str) -> None:
        """Hook the DiT (inputs, outputs, blocks); each runner taps its scheduler's `step` itself,
        where its library keeps the scheduler (with `before_scheduler_step`, `on_scheduler_step`)."""
        self.transformer = transformer
        taps.forward_pre_hook(transformer, self.on_dit_inputs)
        taps.forward_hook(transformer, self.on_dit)
        first = True
        for path in adapter.block_lists:
            where = adapter.block_list_path(side, path)
            try:
                blocks = transformer.get_submodule(where)
            except AttributeError:
                raise ParityError(
                    f"the {side} DiT ({type(transformer).__name__}) has no block list {where!r}; "
                    f"declare the port's path in the {adapter.name!r} adapter (port_block_lists)"
                ) from None
            for index, block in enumerate(blocks):
                if first:
                    taps.forward_pre_hook(block, self.embedders_hook)
                    first = False
                name = adapter.block_name(side, path, index)
                if name is not None:
                    taps.forward_hook(block, self.block_hook(name, block))
