"""The port's Req contract fields, recorded by their role after every stage of SGLang's pipeline, so
a Hybrid port's single BeforeDenoisingStage is reported stage by stage too; in isolated mode each
field is then replaced by the reference's value. Only the SGLang runner uses this (SGLang's `Req`)."""

from __future__ import annotations

from typing import Any

import torch

from parity import stages
from parity.cases import Case
from parity.families.base import FamilyAdapter
from parity.runners.recorder import DenoisingRecorder
from parity.runners.teacher import Teacher
from parity.taps import Taps, argument, replace_argument
from parity.trace import Trace


class ReqFields:
    """Latents, the schedule and further tensor fields are recorded when first set; prompt
    embeddings again whenever a later stage replaces them (SD3 merges its three encoders' outputs in
    a stage of its own), so the last record is what the denoiser consumes."""

    def __init__(
        self, trace: Trace, case: Case, adapter: FamilyAdapter, teacher: Teacher | None, loop: DenoisingRecorder
    ) -> None:
        self.trace = trace
        self.port = adapter.port
        self.layout = adapter.latent_layout
        self.size: dict[str, Any] = {"height": case.height, "width": case.width}
        self.teacher = teacher
        self.loop = loop
        self.recorded: set[str] = set()
        self.embeds_seen: dict[str, list[int]] = {}

    def reference_for(self, name: str, value: Any) -> Any:
        """Isolated mode: the reference's value to put in the Req instead of the port's."""
        found = self.teacher.get(name, like=value) if self.teacher is not None else None
        return value if found is None else found

    def after_stage(self, batch: Any, taps: Taps) -> None:
        self._embeddings(batch)
        self._latents(batch)
        self._tensor_fields(batch)
        self._schedule(batch, taps)

    def _embeddings(self, batch: Any) -> None:
        for field, names in (
            ("prompt_embeds", self.port.prompt_embeds),
            ("negative_prompt_embeds", self.port.negative_prompt_embeds),
            *self.port.pooled_fields,
        ):
            values = getattr(batch, field, None)
            if isinstance(values, torch.Tensor):  # not a list: a broken Req contract, which parity.contract reports
                continue
            if values and self.embeds_seen.get(field) != [id(v) for v in values]:
                for index, (name, value) in enumerate(zip(names, values, strict=False)):
                    self.trace.add(name, stages.TEXT_ENCODING, value)
                    values[index] = self.reference_for(name, value)
                for repeat_field, repeat_names in self.port.repeated_embeds:
                    repeated = getattr(batch, repeat_field, None) or []
                    for index, name in enumerate(repeat_names[: len(repeated)]):
                        repeated[index] = self.reference_for(name, repeated[index])
                self.embeds_seen[field] = [id(v) for v in values]

    def _latents(self, batch: Any) -> None:
        if self.port.noise_in_denoising:  # Req.latents is not what the port denoises: tap_noise records that
            return
        if "latents" not in self.recorded and getattr(batch, "latents", None) is not None:
            self.recorded.add("latents")
            self.trace.add("latents", stages.LATENT_PREPARATION, batch.latents, layout=self.layout, **self.size)
            batch.latents = self.reference_for("latents", batch.latents)

    def _tensor_fields(self, batch: Any) -> None:
        """Further tensor fields, e.g. a condition image's latents, GLM-Image's AR prior tokens."""
        for fields, stage in (
            (self.port.text_fields, stages.TEXT_ENCODING),
            (self.port.latent_fields, stages.LATENT_PREPARATION),
        ):
            for field, name in fields:
                if name not in self.recorded and getattr(batch, field, None) is not None:
                    self.recorded.add(name)
                    self.trace.add(name, stage, getattr(batch, field))
                    setattr(batch, field, self.reference_for(name, getattr(batch, field)))

    def _schedule(self, batch: Any, taps: Taps) -> None:
        if "timesteps" in self.recorded or getattr(batch, "timesteps", None) is None:
            return
        self.recorded.add("timesteps")
        # The schedule actually used lives on the request's scheduler (batch.sigmas is the unshifted
        # input linspace).
        scheduler = getattr(batch, "scheduler", None)
        source = scheduler if scheduler is not None else batch
        self.trace.add("timesteps", stages.TIMESTEP_PREPARATION, source.timesteps)
        self.trace.add("sigmas", stages.TIMESTEP_PREPARATION, source.sigmas)
        if self.teacher is not None:
            _force(source, "timesteps", self.reference_for("timesteps", source.timesteps))
            _force(source, "sigmas", self.reference_for("sigmas", source.sigmas))
            batch.timesteps = self.reference_for("timesteps", batch.timesteps)
        if scheduler is not None:
            taps.wrap_method(scheduler, "step", self.loop.on_scheduler_step, before=self.loop.before_scheduler_step)

    def tap_scheduler(self, scheduler: Any, taps: Taps) -> None:
        """For a port whose denoising stage sets its scheduler up itself (`PortSpec.denoising_scheduler`):
        the schedule each `set_timesteps` call leaves on the scheduler (replaced by the reference's in
        isolated mode, before the stage reads it) and every `step`. A schedule set once denoising has
        begun (a later chunk, a pyramid stage) is recorded at the step it starts from, as the reference's."""

        def on_set_timesteps(args: tuple, kwargs: dict, result: Any) -> None:
            self.recorded.add("timesteps")
            step = self.loop.step or None
            for name in ("timesteps", "sigmas"):
                value = getattr(scheduler, name)
                self.trace.add(name, stages.TIMESTEP_PREPARATION, value, step=step)
                found = self.teacher.get(name, step, like=value) if self.teacher is not None else None
                if found is not None:
                    setattr(scheduler, name, found)

        taps.wrap_method(scheduler, "set_timesteps", on_set_timesteps)
        taps.wrap_method(scheduler, "step", self.loop.on_scheduler_step, before=self.loop.before_scheduler_step)

    def tap_noise(self, stage: Any, taps: Taps) -> None:
        """For a port whose denoising stage draws the initial noise itself (`PortSpec.noise_in_denoising`):
        the `latents` argument of the first call of the stage's methods named there, replaced by the
        reference's in isolated mode."""

        def before(args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if "latents" in self.recorded:
                return None
            self.recorded.add("latents")
            latents = argument(args, kwargs, 0, "latents")
            self.trace.add("latents", stages.LATENT_PREPARATION, latents, layout=self.layout, **self.size)
            return replace_argument(args, kwargs, 0, "latents", self.reference_for("latents", latents))

        for name in self.port.noise_in_denoising:
            if hasattr(stage, name):
                taps.wrap_method(stage, name, lambda a, k, out: None, before=before)


def _force(owner: Any, name: str, value: Any) -> None:
    """Isolated mode: put the reference's schedule in `owner.<name>`. A scheduler that exposes it as a
    read-only view of another object (SGLang's DPMSolverMultistepScheduler wrapper reads the sigmas of the
    Diffusers scheduler it wraps) gets the values copied into the tensor it shows."""
    current = getattr(owner, name)
    if value is current:
        return
    try:
        setattr(owner, name, value)
    except AttributeError:
        if not (isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor) and current.shape == value.shape):
            raise
        current.copy_(value)
