"""Observes the port's Req contract for parity.contract: the Req as the denoising stage receives it, the
generator as it was when the initial latents were drawn, and every stage verification SGLang failed.
Only the SGLang runner uses this (SGLang's stages, Req and VerificationResult)."""

from __future__ import annotations

from typing import Any

from parity import contract
from parity.taps import Before, OnCall, Taps


class ReqContract:
    """Fills `view` (RunInfo.contract, plain data) as the pipeline runs, so that it is there even when the
    port stops: on a StageVerificationError, or a crash that a malformed field causes later."""

    def __init__(self, view: dict[str, Any], text_encoders: list[str]) -> None:
        self.view = view
        self.view.update(verification=[], text_encoders=text_encoders)
        self._generator: dict[str, Any] | None = None  # Req.generator as the running stage found it
        self._latents_seen = False

    def tap(self, stage: Any, taps: Taps, denoiser: bool, standard: bool) -> None:
        """The stage's verifications (the denoiser's input verification first describes the Req it gets).
        Its `forward` is the runner's to wrap (a method is tapped once): it calls `before_stage` and
        `after_stage`."""
        name = type(stage).__name__
        for check in ("input", "output"):
            entering = self._entering(name, standard) if denoiser and check == "input" else None
            taps.wrap_method(stage, f"verify_{check}", self._verified(name, check), entering)

    def _verified(self, stage: str, check: str) -> OnCall:
        """Keeps a failed verification, as SGLang is about to raise StageVerificationError for it."""

        def on_call(args: tuple, kwargs: dict, result: Any) -> None:
            if result is None or result.is_valid():
                return
            details = result.get_detailed_failures()
            fields = {field: [str(f) for f in details.get(field, [])] for field in result.get_failed_fields()}
            self.view["verification"].append({"stage": stage, "check": check, "fields": fields})

        return on_call

    def _entering(self, stage: str, standard: bool) -> Before:
        """Describes the Req the denoiser receives, before SGLang verifies it."""

        def before(args: tuple, kwargs: dict) -> None:
            if "fields" in self.view:  # a denoiser that runs again (a later pass) keeps the first Req
                return
            batch = args[0] if args else kwargs["batch"]
            self.view.update(
                denoiser=stage,
                standard=standard,
                fields={name: contract.describe(getattr(batch, name, None)) for name in contract.FIELDS},
            )

        return before

    def before_stage(self, args: tuple, kwargs: dict) -> None:
        """A stage's forward begins: the Req's generator, until the initial latents are drawn."""
        if not self._latents_seen:
            batch = args[0] if args else kwargs.get("batch")
            self._generator = contract.describe(getattr(batch, "generator", None))

    def after_stage(self, stage: Any, batch: Any) -> None:
        """The first stage whose Req carries latents drew them: keep the generator it started with."""
        if not self._latents_seen and getattr(batch, "latents", None) is not None:
            self._latents_seen = True
            self.view["at_draw"] = {"stage": type(stage).__name__, "generator": self._generator}
