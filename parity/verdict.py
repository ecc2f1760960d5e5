"""The run's verdict and the first place the port diverges from the reference.

`decide` is pure: it reads frozen checks and returns a Verdict that holds everything it concluded
(each failing check's role, the causes in execution order, the first divergence); no check is
ever changed by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from parity import stages
from parity.compare import Check
from parity.vocab import EXIT_CODES, Outcome, Role


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    causes: tuple[Check, ...] = ()  # failing checks that no earlier failure feeds, in execution order
    roles: Mapping[tuple, Role] = field(default_factory=lambda: MappingProxyType({}))  # Check.ident -> role
    error: str | None = None

    @property
    def first(self) -> Check | None:
        """The first divergence: the earliest cause."""
        return self.causes[0] if self.causes else None

    @property
    def first_divergence(self) -> dict | None:
        return self.first.where() if self.first else None

    @property
    def cause_list(self) -> list[dict]:
        return [c.where() for c in self.causes]

    def role(self, check: Check) -> Role | None:
        return self.roles.get(check.ident)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]


def _feeds(earlier: str, later: str) -> bool:
    """Whether a tensor of stage `earlier` is an input (directly or not) of stage `later`.

    The Req contract feeds every stage: the port's tensors are read from its fields, and a field of the
    wrong type, length or origin (an unseeded noise) makes what follows suspect. Text encoding, latent
    preparation and timestep preparation are independent roots; denoising consumes all three and
    decoding consumes denoising. The float64 audit ran teacher-forced on the reference's inputs: nothing
    earlier feeds it, so each of its flags is a cause of its own.
    """
    if later == stages.AUDIT:
        return False
    return earlier in (later, stages.CONTRACT) or stages.rank(later) >= stages.rank(stages.DENOISING)


def classify(checks: Iterable[Check], isolated: bool = False) -> dict[tuple, Role]:
    """Each failing check's role: a `cause`, or `downstream` of an earlier failure it depends on.
    In isolated mode every component ran on the reference's inputs: each failure is a cause."""
    failing = sorted((c for c in checks if not c.passed), key=Check.execution_key)
    roles: dict[tuple, Role] = {}
    for i, check in enumerate(failing):
        upstream = not isolated and any(_feeds(earlier.stage, check.stage) for earlier in failing[:i])
        roles[check.ident] = Role.DOWNSTREAM if upstream else Role.CAUSE
    return roles


def decide(checks: Iterable[Check], error: str | None = None, isolated: bool = False) -> Verdict:
    """`error` when a side could not run (or nothing was compared), else `fail` or `pass`."""
    checks = tuple(checks)
    roles = classify(checks, isolated)
    causes = tuple(sorted((c for c in checks if roles.get(c.ident) is Role.CAUSE), key=Check.execution_key))
    frozen = MappingProxyType(roles)
    if error is not None:
        return Verdict(Outcome.ERROR, causes, frozen, error)
    if not checks:
        return Verdict(Outcome.ERROR, (), frozen, "nothing was compared: neither side recorded a tensor")
    return Verdict(Outcome.FAIL if causes else Outcome.PASS, causes, frozen)
