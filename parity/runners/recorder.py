"""The denoising loop's recorder: the DiT's inputs and outputs, its blocks and the scheduler step,
named the same way on both sides."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from parity import progress, stages
from parity.audit import FLOOR
from parity.cases import Case
from parity.errors import ParityError
from parity.families.base import FamilyAdapter
from parity.referee import FP64
from parity.runners import RunOptions
from parity.runners.replay import float32_rounding_moved, replay_fp64
from parity.runners.teacher import Teacher
from parity.taps import (
    Taps,
    argument,
    bound_arguments,
    first_tensor,
    named_arguments,
    replace_argument,
    replace_first,
    set_arguments,
)
from parity.trace import Trace, stack_samples
from parity.vocab import Side

EMBEDDERS = stages.EMBEDDERS


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

    def __init__(self, trace: Trace, case: Case, adapter: FamilyAdapter, side: Side, options: RunOptions) -> None:
        self.trace = trace
        self.side, self.total_steps = side, case.steps
        self.cfg = case.cfg_enabled
        self.layout = adapter.latent_layout
        self.size: dict[str, Any] = {"height": case.height, "width": case.width}
        self.block_outputs = adapter.block_outputs
        self.block_steps = options.block_steps
        self.teacher = Teacher(options.teacher) if options.teacher is not None else None
        spec = adapter.side(side)
        self.timestep_scale = spec.timestep_scale
        self.guidance_scale = spec.guidance_scale
        self.dit_guidance = adapter.dit_guidance
        self.dit_arguments = spec.dit_arguments
        self.dit_positions: dict[str, int] = {}
        self.timestep_offset = spec.timestep_offset
        self.output_scale = spec.dit_output_scale
        # block output name -> the block forward's parameter that takes it in
        inputs = spec.block_inputs or adapter.block_inputs or self.block_outputs
        self.block_inputs = dict(zip(self.block_outputs, inputs, strict=True))
        # lists whose blocks on this side take and return the two block outputs joined along the tokens
        # (SideSpec.joined_blocks): list path -> (joined parameter, length parameter); and by block position
        self.joined = {path: (param, length) for path, param, length in spec.joined_blocks}
        self.joined_at: dict[int, tuple[str, str]] = {}
        # lists whose blocks return other items (FamilyAdapter.block_list_outputs): each name is also the
        # parameter that takes it in
        self.list_inputs = {path: dict(zip(names, names, strict=True)) for path, names in adapter.block_list_outputs}
        self.block_io: list[dict[str, str]] = []  # per captured block: output name -> input parameter
        self.chained = adapter.block_lists_chained
        self.input_records: dict[int, str] = {}  # block position -> the record of its input (first of a list)
        # The reference may run both CFG branches as one call on a batch of two (uncond, cond, or
        # cond, uncond): record the conditional half of inputs and blocks, and split the output.
        order = adapter.reference.cfg_batch if side == Side.REFERENCE and self.cfg else None
        self.batched = order in ("uncond_cond", "cond_uncond")
        self.cond_index = 0 if order == "cond_uncond" else 1
        self.replay_step = options.replay_step
        self.replay_block = options.replay_block
        self.replaying = False
        self.audit = options.audit  # the DiT call's float64 replay records its blocks too (parity.audit)
        self.keep = adapter.replay_keeps_float32  # parameters a float64 replay leaves as they are
        # DiT call arguments the audit's floor replay also moves by a float32 rounding (the reference's only)
        self.floor_arguments = adapter.reference.replay_floor_arguments if side == Side.REFERENCE else ()
        self.moving_aux = False  # the audit's second reference replay: blocks' other inputs moved by fp32 rounding
        self.block_modules: list[Any] = []  # every block of the DiT: the DiT call's replay casts one at a time
        self.embeddings_this_call = 0  # calls of the DiT's time embeddings within its current call
        self.transformer: Any = None
        self.block_order: list[str] = []
        self.step = 0
        self.calls_this_step = 0
        self.cfg_rank, self.cfg_degree = options.cfg_rank, options.cfg_degree

    def _branch(self) -> int:
        """The CFG branch of the DiT call about to run or just run (0: conditional, 1: unconditional):
        the call's index in its step, or with CFG-parallel ranks, its index among every rank's calls."""
        return self.calls_this_step * self.cfg_degree + self.cfg_rank

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
        # Later calls of a step (the unconditional branch) see the same latents and timestep: not recorded
        # again, but with a teacher fed the reference's too, as the first call (a port may recompute them
        # after the points the teacher replaced: Helios' pyramid re-noises between stages).
        record = not self.calls_this_step
        self.embeddings_this_call = 0
        if not record and self.teacher is None:
            return None
        latents_name = self.dit_arguments[0]
        latents = self._dit_argument(args, kwargs, latents_name)
        if record:
            self._add("dit_input", latents)
        reference = self._reference("dit_input", latents)
        args, kwargs = self._replace_dit_argument(args, kwargs, latents_name, reference)
        return self._conditioning(args, kwargs, record)

    def _conditioning(self, args: tuple, kwargs: dict, record: bool, exact: bool = False) -> tuple[tuple, dict]:
        """The DiT's timestep (and guidance) recorded in the scheduler's units (value * scale + offset)
        and, with a teacher, replaced by the reference's in this side's units: cast to the argument's dtype,
        or kept in float64 (`exact`: the audit's float64 replay, where a float32 rounding of the unit
        conversion would be a difference of its own)."""
        _, timestep_name, guidance_name = self.dit_arguments
        conditioning = [("dit_timestep", timestep_name, self.timestep_scale, self.timestep_offset)]
        if self.dit_guidance:
            conditioning.append(("dit_guidance", guidance_name, self.guidance_scale, 0.0))
        for name, key, scale, offset in conditioning:
            value = self._dit_argument(args, kwargs, key)
            if isinstance(value, torch.Tensor):
                if record:
                    self._add(name, value.double() * scale + offset, layout="canonical")
                reference = self._reference(name, value.double())
                if reference is not None:
                    value = (reference - offset) / scale if exact else ((reference - offset) / scale).to(value.dtype)
                    args, kwargs = self._replace_dit_argument(args, kwargs, key, value)
        return args, kwargs

    def on_time_embedding(self, args: tuple, kwargs: dict) -> None:
        """What a sinusoidal time embedding of the DiT receives (FamilyAdapter.time_embedding_inputs),
        on the step's first DiT call: the k-th such call as `dit_time_embedding_input.<k>`. Never
        teacher-forced: given the reference's timestep, the port's DiT must embed the same number."""
        index, self.embeddings_this_call = self.embeddings_this_call, self.embeddings_this_call + 1
        value = args[0] if args else kwargs.get("timesteps")
        if self.calls_this_step or self.replaying or not isinstance(value, torch.Tensor):
            return
        self._add(f"dit_time_embedding_input.{index}", value.double(), layout="canonical")

    def on_dit(self, args: tuple, kwargs: dict, output: Any) -> Any:
        if self.step == self.replay_step and self.replay_block is None and not self._branch():
            self.replaying = True  # the replay runs the blocks again: their hooks record only for the audit
            if self.audit and self.teacher is not None:
                args, kwargs = self._conditioning(args, kwargs, record=False, exact=True)
            replayed_name = "noise_pred_cond" if self.cfg else "noise_pred"
            # The reference's float64 replay, then (audit) once more with every block's inputs other than the
            # hidden states (time embedding, RoPE tables) moved by one float32 rounding: how far rounding what
            # a library computes outside the blocks (or outside the DiT call) in float32 moves each output.
            replays = [FP64] + ([FLOOR] if self.audit and self.teacher is None else [])
            try:
                for suffix in replays:
                    self.moving_aux = suffix == FLOOR
                    if self.moving_aux:
                        moved = {k: float32_rounding_moved(v) for k, v in kwargs.items() if k in self.floor_arguments}
                        kwargs = {**kwargs, **moved}
                    replayed = replay_fp64(self.transformer, args, kwargs, parts=self.block_modules, keep=self.keep)
                    self._add(replayed_name + suffix, stack_samples(first_tensor(replayed)) * self.output_scale)
            finally:
                self.replaying = self.moving_aux = False
        if self.batched:
            prediction = stack_samples(first_tensor(output)) * self.output_scale
            self._add("noise_pred_cond", prediction)  # _add keeps the conditional half
            self._add("noise_pred_uncond", prediction[1 - self.cond_index : 2 - self.cond_index])
            self.calls_this_step += 1
            return None
        if self.cfg:
            name = ("noise_pred_cond", "noise_pred_uncond")[min(self._branch(), 1)]
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
        progress.step(self.side, self.step, self.total_steps)  # the console's step count, from parity's own count
        return replacement

    def _captures(self) -> bool:
        if self.replaying:  # the DiT call's float64 replay: its blocks are recorded only for the audit
            return self.audit
        return self.step in self.block_steps and not self._branch()

    def _suffix(self) -> str:
        """What names a record made inside the DiT call's float64 replay (the audit's): `@fp64`, and
        `@fp64-aux32` in the replay whose blocks get their other inputs moved by float32 rounding (the floor)."""
        return (FLOOR if self.moving_aux else FP64) if self.replaying else ""

    def _record_block(self, block: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                name += self._suffix()
                self.trace.add(name, stages.DENOISING, self._cond(value), step=self.step, block=block)

    def embedders_hook(
        self,
        module: Any,
        record: str = EMBEDDERS,
        io: dict[str, str] | None = None,
        joined: tuple[str, str] | None = None,
    ):
        """Record the inputs of a list's first block as block `record` (`embedders` for the first list)."""
        io = self.block_inputs if io is None else io

        def on_first_block_inputs(args: tuple, kwargs: dict) -> None:
            if self._captures():
                kwargs = bound_arguments(module, args, kwargs)
                if joined is not None:
                    self._record_block(record, self._split(kwargs.get(joined[0]), kwargs.get(joined[1])))
                else:
                    self._record_block(record, {out: kwargs.get(arg) for out, arg in io.items()})

        return on_first_block_inputs

    def block_hook(self, block: str, module: Any, io: dict[str, str] | None = None):
        position = len(self.block_order)
        self.block_order.append(block)
        self.block_io.append(self.block_inputs if io is None else io)

        def on_block(args: tuple, kwargs: dict, output: Any) -> Any:
            if not self._captures():
                return None
            args, kwargs = named_arguments(module, args, kwargs)
            if self.moving_aux:  # the floor's replay: this block again, its other inputs moved by float32 rounding
                args, kwargs = self._aux_moved(position, module, args, kwargs)
                output = self._fp64(module, args, kwargs)
                self._record_block(block, self._named(output, position, bound_arguments(module, args, kwargs)))
                return output  # the next blocks continue from it
            if self.teacher is not None:
                args, kwargs = self._reference_block_inputs(position, module, args, kwargs)
                with torch.no_grad():
                    # in the audit's float64 replay: the block in float64 on the reference's float64 inputs
                    output = self._fp64(module, args, kwargs) if self.replaying else module.forward(*args, **kwargs)
            bound = bound_arguments(module, args, kwargs)
            self._record_block(block, self._named(output, position, bound))
            if self.step == self.replay_step and block == self.replay_block:
                self.replaying = True
                try:
                    replayed = self._named(self._fp64(module, args, kwargs), position, bound)
                finally:
                    self.replaying = False
                self._record_block(block, {name + FP64: value for name, value in replayed.items()})
            return None

        return on_block

    def _fp64(self, module: Any, args: tuple, kwargs: dict) -> Any:
        return replay_fp64(module, args, kwargs, keep=self.keep)

    def _aux_moved(self, position: int, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The block's (args, kwargs) with every floating input but the hidden states it chains moved by one
        float32 rounding (parity.runners.replay.float32_rounding_moved)."""
        joined = self.joined_at.get(position)
        chained = {joined[0]} if joined is not None else set(self.block_io[position].values())
        bound = bound_arguments(module, args, kwargs)
        moved = {name: float32_rounding_moved(value) for name, value in bound.items() if name not in chained}
        return set_arguments(module, args, kwargs, moved)

    def _named(self, output: Any, position: int, kwargs: dict) -> dict[str, Any]:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        joined = self.joined_at.get(position)
        if joined is not None:  # one tensor: the two block outputs joined along the tokens
            return self._split(outputs[0], kwargs.get(joined[1]))
        return dict(zip(self.block_io[position], outputs, strict=False))

    def _split(self, joined: Any, length: Any) -> dict[str, Any]:
        """The two block outputs in a joined tensor (B, N + length, D): the first N tokens, then `length`."""
        if not isinstance(joined, torch.Tensor) or length is None:
            return {}
        n = int(length)
        first, second = self.block_outputs[:2]
        return {first: joined[:, : joined.shape[1] - n], second: joined[:, joined.shape[1] - n :]}

    def _reference_block_inputs(self, position: int, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The block's (args, kwargs) with the reference's input for this block (the previous reference
        block's output, or the reference's embedded inputs for the first block), by name, at its position
        when passed positionally. The block is then run again on them beside the normal flow, which is left
        alone."""
        source = self.input_records.get(position) or self.block_order[position - 1]
        bound = bound_arguments(module, args, kwargs)
        joined = self.joined_at.get(position)
        if joined is not None:  # the reference's two inputs, joined as this block takes them
            parts = self._split(bound.get(joined[0]), bound.get(joined[1]))
            found = [self._reference(out + self._suffix(), like, block=source) for out, like in parts.items()]
            both = len(found) == 2 and all(v is not None for v in found)
            inputs = {joined[0]: torch.cat(found, dim=1) if both else None}
        else:
            inputs = {
                arg: self._reference(out + self._suffix(), bound.get(arg), block=source)
                for out, arg in self.block_io[position].items()
            }
        if any(v is None for v in inputs.values()):
            raise ParityError(
                f"isolated mode cannot feed block {self.block_order[position]} the reference's input "
                "(the reference recorded no input for it, or its input's shape differs)"
            )
        return set_arguments(module, args, kwargs, inputs)

    def tap_dit(self, taps: Taps, transformer: Any, adapter: FamilyAdapter, side: Side) -> None:
        """Hook the DiT (inputs, outputs, blocks); each runner taps its scheduler's `step` itself,
        where its library keeps the scheduler (with `before_scheduler_step`, `on_scheduler_step`)."""
        self.transformer = transformer
        taps.forward_pre_hook(transformer, self.on_dit_inputs)
        taps.forward_hook(transformer, self.on_dit)
        if adapter.time_embedding_inputs:
            for module in transformer.modules():
                if any(cls.__name__ == "Timesteps" for cls in type(module).__mro__):
                    taps.forward_pre_hook(module, self.on_time_embedding)
        first = True
        self.dit_positions = {
            p.name: i
            for i, p in enumerate(inspect.signature(transformer.forward).parameters.values())
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        }
        for path in adapter.block_lists:
            where = adapter.block_list_path(side, path)
            io = self.list_inputs.get(path, self.block_inputs)
            joined = self.joined.get(path)
            try:
                blocks = transformer.get_submodule(where)
            except AttributeError:
                raise ParityError(
                    f"the {side} DiT ({type(transformer).__name__}) has no block list {where!r}; "
                    f"declare the port's path in the {adapter.name!r} adapter (port.block_lists)"
                ) from None
            for index, block in enumerate(blocks):
                self.block_modules.append(block)
                if index == 0 and (first or not self.chained):
                    record = EMBEDDERS if first else f"{path}{stages.BLOCK_INPUT_SUFFIX}"
                    self.input_records[len(self.block_order)] = record
                    taps.forward_pre_hook(block, self.embedders_hook(block, record, io, joined))
                    first = False
                name = adapter.block_name(side, path, index)
                if name is not None:
                    if joined is not None:
                        self.joined_at[len(self.block_order)] = joined
                    taps.forward_hook(block, self.block_hook(name, block, io))
