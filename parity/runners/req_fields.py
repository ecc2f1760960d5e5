"""The port's Req contract fields, recorded by their role after every stage of SGLang's pipeline, so
a Hybrid port's single BeforeDenoisingStage is reported stage by stage too; in isolated mode each
field is then replaced by the reference's value. Only the SGLang runner uses this (SGLang's `Req`)."""

from __future__ import annotations

from typing import Any

from parity import stages
from parity.cases import Case
from parity.families.base import FamilyAdapter
from parity.runners.recorder import DenoisingRecorder
from parity.runners.teacher import Teacher
from parity.taps import Taps
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
            source.timesteps = self.reference_for("timesteps", source.timesteps)
            source.sigmas = self.reference_for("sigmas", source.sigmas)
            batch.timesteps = self.reference_for("timesteps", batch.timesteps)
        if scheduler is not None:
            taps.wrap_method(scheduler, "step", self.loop.on_scheduler_step, before=self.loop.before_scheduler_step)
