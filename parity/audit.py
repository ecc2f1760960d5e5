"""The float64 audit (`--audit fp64`): logic differences smaller than the run dtype's own rounding.

A constant slightly off (a norm's eps, a RoPE theta), or a small term dropped, moves a component's
output by less than float32 rounding does, so it passes every fixed tolerance, and the fp64 referee
only runs on a failure. The audit replays the DiT call of the first step in float64 on both sides,
the port teacher-forced on the reference's inputs, and records every block in it; each port block is
also run in float64 on the reference's float64 input for that block (parity.runners.recorder).

With weights and inputs equal and float64 arithmetic, two equal computations differ by float64
rounding, plus one thing float64 cannot remove: what a library computes outside the replayed call in
float32 and hands in (SGLang's Flux builds its RoPE tables in its pipeline config, in float32; the
reference builds them inside its DiT, in float64 here; Diffusers' Z-Image caches its RoPE table in
complex64). So the reference is replayed a second time with every block's inputs other than the hidden
states it chains (time embedding, RoPE tables) moved by one float32 rounding (each element times
1 +- 2^-24): its distance from the first replay, the component's `floor`, is what rounding those
inputs to float32 at another point can explain. RULE, per component:

    flagged when rel_l2(port_fp64, reference_fp64) > max(FACTOR x floor, FLOAT64_ROUNDING)

FACTOR and FLOAT64_ROUNDING are calibrated on every bundled case (docs/tolerances.md, "The float64
audit"): no flag on a clean port, the planted logic differences flagged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from parity import metrics, stages
from parity.compare import Check
from parity.referee import FP64
from parity.tolerance import Policy, Tolerance
from parity.vocab import Status

FLOOR = FP64 + "-aux32"  # suffix of the reference's replay with the blocks' other inputs moved by fp32 rounding
FACTOR = 10.0
FLOAT64_ROUNDING = 1e-12  # clean differences of components with nothing computed outside: <= 3e-16 (rel L2)
RULE = f"rel_l2 <= max({FACTOR:g} x floor, {FLOAT64_ROUNDING:.0e}) between the two float64 replays"
NOT_AUDITED = "the text encoders and the VAE decode (replayed in float64 by neither library's hooks here)"


@dataclass(frozen=True)
class Component:
    """One audited output: a DiT block's (or its embedded inputs'), or the DiT call's."""

    tensor: str  # the output's canonical name, e.g. hidden_states, noise_pred_cond
    block: str | None  # None: the DiT call
    reference: torch.Tensor | None  # the reference's float64 output, canonical layout
    port: torch.Tensor | None  # the port's float64 output on the reference's inputs
    floor: torch.Tensor | None = None  # the reference's, its blocks' other inputs moved by float32 rounding

    def limit(self) -> tuple[float, float]:
        """(the component's limit, its floor): what float32 rounding of the blocks' other inputs explains."""
        floor = 0.0
        if self.floor is not None and self.reference is not None and self.floor.shape == self.reference.shape:
            floor = metrics.compute(self.reference, self.floor).rel_l2
        floor = floor if math.isfinite(floor) else 0.0
        return max(FACTOR * floor, FLOAT64_ROUNDING), floor

    @property
    def kind(self) -> str:
        """`dit_call`, `embedders` (the DiT's input embedding) or `block`, for the per-kind maxima."""
        if self.block is None:
            return "dit_call"
        return "embedders" if stages.is_block_input(self.block) else "block"

    def label(self) -> str:
        return self.tensor if self.block is None else f"{self.block} {self.tensor}"


def components(pairs: Iterable[tuple[str, str | None, torch.Tensor | None, torch.Tensor | None]]) -> list[Component]:
    """The float64 records among aligned pairs (tensor, block, reference, port), named without `@fp64`,
    each with its floor (the reference's `@fp64-aux32` record of the same tensor and block)."""
    pairs = list(pairs)
    floors = {(tensor.removesuffix(FLOOR), block): ref for tensor, block, ref, _ in pairs if tensor.endswith(FLOOR)}
    return [
        Component(tensor.removesuffix(FP64), block, ref, port, floors.get((tensor.removesuffix(FP64), block)))
        for tensor, block, ref, port in pairs
        if tensor.endswith(FP64)
    ]


def check(component: Component, step: int, policy: Policy, order: int) -> Check:
    """The audit check of one component: its two float64 outputs against its limit (see RULE); the run dtype's
    tolerance for that tensor, under which a flagged difference hides, in the message and evidence."""
    hides_under = policy.for_tensor(stages.DENOISING, component.tensor)
    where = f"{component.label()} at step {step}"
    limit, floor = component.limit()
    tolerance = Tolerance(rel_l2=limit, source="audit fp64", text=f"rel_l2<={limit:.2g} ({RULE}, floor {floor:.2g})")

    def made(passed: bool, status: Status, message: str, found: metrics.Metrics | None = None) -> Check:
        evidence = {"hides_under": hides_under.describe(), "kind": component.kind, "floor": floor, "limit": limit}
        return Check(
            stages.AUDIT, component.tensor, step, component.block, passed, status, tolerance, found, math.nan,
            message, order, evidence,
        )  # fmt: skip

    if component.reference is None or component.port is None:
        side = "port" if component.port is None else "reference"
        status = Status.MISSING_PORT if component.port is None else Status.MISSING_REFERENCE
        return made(False, status, f"the {side}'s float64 replay recorded no {where}")
    found = metrics.compute(component.reference, component.port)
    if not found.shape_match:
        shapes = f"{list(component.port.shape)} vs reference {list(component.reference.shape)}"
        return made(False, Status.SHAPE, f"{where}: float64 outputs shaped {shapes}", found)
    if found.port_nonfinite or found.reference_nonfinite:
        return made(False, Status.NONFINITE, f"{where}: NaN/Inf in a float64 replay", found)
    if found.rel_l2 <= limit:
        return made(True, Status.OK, "", found)
    message = (
        f"{where}: the float64 replays differ by rel L2 {found.rel_l2:.3g} (max abs {found.max_abs:.3g}), beyond "
        f"what rounding explains ({limit:.2g}: float64, and float32 rounding of the blocks' other inputs, "
        f"{floor:.2g}): a logic difference, hidden under the {policy.dtype} tolerance ({hides_under.describe()})"
    )
    return made(False, Status.MISMATCH, message, found)


def checks(found: list[Component], step: int, policy: Policy, first_order: int = 0) -> list[Check]:
    return [check(c, step, policy, first_order + i) for i, c in enumerate(found)]


def summary(audited: list[Check], seconds: float, plain_seconds: float | None) -> dict:
    """report.json's `audit`: the rule, what was audited and flagged, the largest difference per kind."""
    largest: dict[str, Mapping] = {}
    for c in audited:
        if c.metrics is None or not math.isfinite(c.metrics.rel_l2):
            continue
        kind = c.evidence["kind"]
        if kind not in largest or c.metrics.rel_l2 > largest[kind]["rel_l2"]:
            at = c.label().removeprefix(f"{stages.AUDIT}/")
            largest[kind] = {"rel_l2": c.metrics.rel_l2, "floor": c.evidence["floor"], "at": at}
    return {
        "mode": "fp64",
        "rule": RULE,
        "step": audited[0].step if audited else 0,
        "components": len(audited),
        "flagged": [c.label() for c in audited if not c.passed],
        "largest_by_kind": largest,
        "not_audited": NOT_AUDITED,
        "seconds": round(seconds, 3),
        "plain_run_seconds": None if plain_seconds is None else round(plain_seconds, 3),
    }


def describe(section: Mapping) -> str:
    """One line on report.json's `audit` section, for the console, report.md and report.html."""
    if "skipped" in section:
        return f"float64 audit: skipped ({section['skipped']})"
    flagged = section.get("flagged") or []
    largest = ", ".join(
        f"{kind} {found['rel_l2']:.2g} (floor {found.get('floor', 0):.2g})"
        for kind, found in (section.get("largest_by_kind") or {}).items()
    )
    head = f"float64 audit of step {section.get('step', 0)}: {section.get('components', 0)} components"
    verdict = f"{len(flagged)} flagged ({', '.join(flagged)})" if flagged else "none flagged"
    return f"{head}, {verdict}; largest difference by kind: {largest or 'none'} ({section.get('rule')})"
