"""What a pass is worth (`parity sensitivity`): the perturbation a probe injects into the port, the search
for the smallest one the verdict detects, and what one probe's comparison says about it.

Pure: no pipeline library (the runs are parity.sensitivity_run's); torch only once a perturbation is made,
so the cache (parity.sensitivity_cache) reads the search's constants without importing it.

A probe adds to one recorded tensor `value` the perturbation `eps * ||value|| * d / ||d||`, d a fixed
seeded Gaussian direction of the tensor's shape: a perturbation of relative L2 size `eps`. It is
*detected* when the probe's comparison fails a check that the unperturbed run passes (a new failure:
checks that already fail cannot tell), and *localized* when the first new failure, in execution order,
names the perturbed tensor (its own check; for the frames also their similarity and noise checks).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from parity.compare import Check

LOW, HIGH = 1e-7, 1e-1  # the relative sizes searched: float32's resolution up to a 10 % error
HALVINGS = 2  # log-scale halvings of the decade found: the answer within a factor 10**(1/4) = 1.8
SEED = 0


def direction(shape: Iterable[int], seed: int = SEED) -> torch.Tensor:
    """A unit-L2-norm Gaussian direction of `shape` (float64, CPU), the same for the same shape and seed."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    d = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    return d / d.norm()


def perturb(value: torch.Tensor, eps: float, seed: int = SEED) -> torch.Tensor:
    """`value` plus a perturbation of relative L2 size `eps` along `direction`, computed in float64 and
    rounded to `value`'s dtype on its device (so in bf16 a small enough perturbation rounds away)."""
    exact = value.detach().double().cpu()
    moved = exact + eps * exact.norm() * direction(exact.shape, seed)
    return moved.to(device=value.device, dtype=value.dtype)


def relative_size(value: torch.Tensor, perturbed: torch.Tensor) -> float:
    """||perturbed - value|| / ||value||: the perturbation's relative size as the tensor holds it (after rounding)."""
    exact = value.detach().double().cpu()
    norm = float(exact.norm())
    difference = float((perturbed.detach().double().cpu() - exact).norm())
    return difference / norm if norm else math.inf if difference else 0.0


@dataclass(frozen=True)
class Target:
    """One recorded tensor a probe perturbs, named as its checks are."""

    stage: str
    tensor: str
    step: int | None = None
    block: str | None = None

    def label(self) -> str:
        parts = [f"{self.stage}/{self.tensor}"]
        parts += [f"step {self.step}"] if self.step is not None else []
        parts += [f"block {self.block}"] if self.block is not None else []
        return " ".join(parts)

    def is_checked_by(self, check: Check) -> bool:
        """Whether `check` is this tensor's own check."""
        return (check.stage, check.tensor, check.step, check.block) == (self.stage, self.tensor, self.step, self.block)

    def is_named_by(self, check: Check) -> bool:
        """Whether `check` names this tensor: its own check, or one that judges it further (the decoded
        frames' `frames_similarity` and `frames_noise`, parity.frames)."""
        own = dataclasses.replace(self, tensor=check.tensor) if check.tensor in _JUDGING.get(self.tensor, ()) else self
        return own.is_checked_by(check)


# Checks made from a tensor beside its own, which name it as well as its own check does.
_JUDGING = {"frames": ("frames_similarity", "frames_noise")}


@dataclass(frozen=True)
class Probe:
    """One probe: the relative size asked for, what the comparison found, and the size the tensor held
    after rounding to its dtype (`realized`; None where not measured)."""

    eps: float
    detected: bool
    first_new: str | None = None  # the label of the first check failing here and not unperturbed
    localized: bool = False  # first_new is the perturbed tensor's own check
    realized: float | None = None


def new_failures(unperturbed: Iterable[Check], probe: Iterable[Check]) -> list[Check]:
    """The probe's failing checks that the unperturbed run passes or lacks, in execution order."""
    failing = {c.ident for c in unperturbed if not c.passed}
    return sorted((c for c in probe if not c.passed and c.ident not in failing), key=lambda c: c.execution_key())


def judge(
    target: Target, eps: float, unperturbed: Iterable[Check], probe: Iterable[Check], realized: float | None = None
) -> Probe:
    """What the probe of `target` at `eps` says: detected (a new failure), by which check first, localized."""
    new = new_failures(unperturbed, probe)
    if not new:
        return Probe(eps, False, realized=realized)
    return Probe(eps, True, new[0].label(), target.is_named_by(new[0]), realized)


@dataclass(frozen=True)
class Search:
    """The probes of one tensor in the order they ran, the smallest detected (None: not even HIGH is,
    "blind") and the largest size probed and missed below it (None: detected at LOW, the floor)."""

    probes: tuple[Probe, ...]
    smallest: Probe | None
    largest_missed: float | None

    @property
    def blind(self) -> bool:
        return self.smallest is None


def decades(low: float = LOW, high: float = HIGH) -> list[float]:
    """The powers of ten from `low` to `high` (both powers of ten), ascending."""
    first, last = round(math.log10(low)), round(math.log10(high))
    return [10.0**k for k in range(first, last + 1)]


def search(probe: Callable[[float], Probe], low: float = LOW, high: float = HIGH, halvings: int = HALVINGS) -> Search:
    """The smallest relative size in [low, high] that `probe` detects, assuming a larger perturbation is
    detected whenever a smaller one is: `high` first (not detected: blind, one probe), then a bisection
    over the decades, then `halvings` bisections of the decade found on a log scale. About 1 + log2(7) + 2
    = 6 probes for 1e-7..1e-1."""
    sizes = decades(low, high)
    ran = [probe(sizes[-1])]
    if not ran[0].detected:
        return Search(tuple(ran), None, sizes[-1])
    best = ran[0]
    missed, hit = -1, len(sizes) - 1  # indices: sizes[missed] not detected (-1: none yet), sizes[hit] detected
    while hit - missed > 1:
        middle = (missed + hit) // 2
        ran.append(probe(sizes[middle]))
        if ran[-1].detected:
            hit, best = middle, ran[-1]
        else:
            missed = middle
    if missed < 0:  # detected at the floor: nothing smaller is searched
        return Search(tuple(ran), best, None)
    below = sizes[missed]
    for _ in range(halvings):
        middle_size = math.sqrt(below * best.eps)
        ran.append(probe(middle_size))
        if ran[-1].detected:
            best = ran[-1]
        else:
            below = middle_size
    return Search(tuple(ran), best, below)
