"""Taps both runners share: tokenizers (transformers objects on both sides), the denoising loop,
the VAE decode; and, in isolated mode, the teacher that feeds the port the reference's values."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from parity import stages
from parity.cases import Case
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.referee import FP64
from parity.runners import RunOptions
from parity.taps import Taps, argument, first_tensor
from parity.trace import Key, Trace, stack_samples

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
                if [n for n in value.shape if n != 1] != [n for n in like.shape if n != 1]:
                    return None
                value = value.reshape(like.shape)  # only singleton axes differ (a one-frame axis): same order
            value = value.to(device=like.device, dtype=like.dtype)
        return value


def named_arguments(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A module call's leading positional arguments bound to the names of its `forward`, so a block
    that its DiT calls positionally (Wan's blocks, in both libraries) is read and fed by name.
    Arguments that cannot be named (positional-only, *args) stay positional."""
    if not args:
        return args, kwargs
    names = [
        p.name
        for p in inspect.signature(module.forward).parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    if len(args) > len(names) or any(name in kwargs for name in names[: len(args)]):
        return args, kwargs
    return (), {**dict(zip(names, args, strict=False)), **kwargs}


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
    taps: Taps,
    tokenizer: Any,
    index: int,
    trace: Trace,
    prompt: str,
    teacher: Teacher | None = None,
    adapter: FamilyAdapter | None = None,
) -> None:
    """Record `input_ids.<index>` / `attention_mask.<index>` of the first call per text; with a
    teacher, the encoder then receives the reference's ids and mask.

    Only the first call per text counts: Diffusers tokenizes a second time with padding="longest"
    just to warn about truncation, and that call does not feed the encoder. Any text other than
    the prompt (or a text the adapter's `prompt_texts` derives from it) is the negative prompt (the
    case's, or a library default when the case sets none), recorded as `negative_...`, so it can
    never overwrite the prompt's ids. With the adapter's `unpadded_tokens`, only the tokens the
    attention mask keeps are recorded.
    """
    seen: set[str] = set()
    prompts = adapter.prompt_texts(prompt) if adapter is not None else {prompt}
    unpadded = adapter is not None and adapter.unpadded_tokens

    def on_call(args: tuple, kwargs: dict, result: Any) -> Any:
        text = argument(args, kwargs, 0, "text")
        text = text[0] if isinstance(text, (list, tuple)) and len(text) == 1 else text
        if not isinstance(text, str) or text in seen:
            return None
        seen.add(text)
        prefix = "" if text in prompts else "negative_"
        mask = result.get("attention_mask") if unpadded and hasattr(result, "get") else None
        for field in ("input_ids", "attention_mask"):
            value = result.get(field) if hasattr(result, "get") else None
            if value is None:
                continue
            tensor = torch.as_tensor(value)
            # Batch-first on both sides, whether the library asked for tensors or lists.
            tensor = tensor.unsqueeze(0) if tensor.ndim == 1 else tensor
            if mask is not None and tensor.shape[0] == 1:
                tensor = tensor[:, torch.as_tensor(mask).reshape(-1).bool()]
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
        self.dit_guidance = adapter.dit_guidance
        self.dit_arguments = adapter.port_dit_arguments if port else adapter.reference_dit_arguments
        self.dit_positions: dict[str, int] = {}
        self.timestep_offset = adapter.port_timestep_offset if port else adapter.reference_timestep_offset
        self.output_scale = adapter.port_dit_output_scale if port else adapter.reference_dit_output_scale
        # block output name -> the block forward's parameter that takes it in
        self.block_inputs = dict(zip(self.block_outputs, adapter.block_inputs or self.block_outputs, strict=True))
        self.chained = adapter.block_lists_chained
        self.input_records: dict[int, str] = {}  # block position -> the record of its input (first of a list)
        # The reference may run both CFG branches as one call on a batch of two (uncond, cond, or
        # cond, uncond): record the conditional half of inputs and blocks, and split the output.
        order = adapter.reference_cfg_batch if not port and self.cfg else None
        self.batched = order in ("uncond_cond", "cond_uncond")
        self.cond_index = 0 if order == "cond_uncond" else 1
        self.replay_step = options.replay_step
        self.replaying = False
        self.transformer: Any = None
        self.block_order: list[str] = []
        self.step = 0
        self.calls_this_step = 0

    def _cond(self, value: Any) -> Any:
        if self.batched and isinstance(value, torch.Tensor) and value.shape[0] == 2:
            return value[self.cond_index : self.cond_index + 1]
        return value

    def _dit_argument(self, args: tuple, kwargs: dict, name: str) -> Any:
        position = self.dit_positions.get(name)
        return args[position] if position is not None and len(args) > position else kwargs.get(name)

    def _replace_dit_argument(self, args: tuple, kwargs: dict, name: str, value: Any) -> tuple[tuple, dict]:
        position = self.dit_positions.get(name)
        if value is None:
            return args, kwargs
        if position is not None and len(args) > position:
            return (*args[:position], value, *args[position + 1 :]), kwargs
        return args, {**kwargs, name: value}

    def _add(self, name: str, value: Any, layout: str | None = None) -> None:
        layout = self.layout if layout is None else layout
        value = stack_samples(value)
        value = self._cond(value) if name not in ("noise_pred_uncond", "latents", "noise_pred") else value
        self.trace.add(name, stages.DENOISING, value, step=self.step, layout=layout, **self.size)

    def _reference(self, name: str, like: Any, block: str | None = None) -> Any:
        return self.teacher.get(name, self.step, block, like=like) if self.teacher else None

    def on_dit_inputs(self, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.calls_this_step:
            return None  # the unconditional branch sees the same latents and timestep
        latents_name, timestep_name, guidance_name = self.dit_arguments
        latents = self._dit_argument(args, kwargs, latents_name)
        self._add("dit_input", latents)
        reference = self._reference("dit_input", latents)
        args, kwargs = self._replace_dit_argument(args, kwargs, latents_name, reference)
        # Each input in the scheduler's units: value * scale + offset.
        conditioning = [("dit_timestep", timestep_name, self.timestep_scale, self.timestep_offset)]
        if self.dit_guidance:
            conditioning.append(("dit_guidance", guidance_name, self.guidance_scale, 0.0))
        for name, key, scale, offset in conditioning:
            value = self._dit_argument(args, kwargs, key)
            if isinstance(value, torch.Tensor):
                self._add(name, value.double() * scale + offset, layout="canonical")
                reference = self._reference(name, value.double())
                if reference is not None:
                    value = ((reference - offset) / scale).to(value.dtype)
                    args, kwargs = self._replace_dit_argument(args, kwargs, key, value)
        return args, kwargs

    def on_dit(self, args: tuple, kwargs: dict, output: Any) -> Any:
        if self.step == self.replay_step and not self.calls_this_step:
            self.replaying = True  # the replay runs the blocks again: their hooks stay quiet
            try:
                replayed = stack_samples(first_tensor(replay_fp64(self.transformer, args, kwargs)))
            finally:
                self.replaying = False
            self._add(("noise_pred_cond" if self.cfg else "noise_pred") + FP64, replayed * self.output_scale)
        if self.batched:
            prediction = stack_samples(first_tensor(output)) * self.output_scale
            self._add("noise_pred_cond", prediction)  # _add keeps the conditional half
            self._add("noise_pred_uncond", prediction[1 - self.cond_index : 2 - self.cond_index])
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
        prediction = stack_samples(first_tensor(output))
        self._add(name, prediction * self.output_scale)
        reference = self._reference(name, prediction)
        return replace_first(output, None if reference is None else reference / self.output_scale)

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

    def embedders_hook(self, module: Any, record: str = EMBEDDERS):
        """Record the inputs of a list's first block as block `record` (`embedders` for the first list)."""

        def on_first_block_inputs(args: tuple, kwargs: dict) -> None:
            if self._captures():
                kwargs = named_arguments(module, args, kwargs)[1]
                self._record_block(record, {out: kwargs.get(arg) for out, arg in self.block_inputs.items()})

        return on_first_block_inputs

    def block_hook(self, block: str, module: Any):
        position = len(self.block_order)
        self.block_order.append(block)

        def on_block(args: tuple, kwargs: dict, output: Any) -> None:
            if not self._captures():
                return
            if self.teacher is not None:
                args, kwargs = named_arguments(module, args, kwargs)
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
        source = self.input_records.get(position) or self.block_order[position - 1]
        inputs = {arg: self._reference(out, kwargs.get(arg), block=source) for out, arg in self.block_inputs.items()}
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
        self.dit_positions = {
            p.name: i
            for i, p in enumerate(inspect.signature(transformer.forward).parameters.values())
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        }
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
                if index == 0 and (first or not self.chained):
                    record = EMBEDDERS if first else f"{path}{stages.BLOCK_INPUT_SUFFIX}"
                    self.input_records[len(self.block_order)] = record
                    taps.forward_pre_hook(block, self.embedders_hook(block, record))
                    first = False
                name = adapter.block_name(side, path, index)
                if name is not None:
                    taps.forward_hook(block, self.block_hook(name, block))
