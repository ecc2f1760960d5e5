"""The closed sets of words a run's results are made of. Each is a StrEnum, so a member compares
equal to its string and report.json keeps the strings users' CI reads (see README, "What is compared
(public vocabulary)")."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Which library produced a trace: Diffusers (the reference) or SGLang (the port)."""

    REFERENCE = "reference"
    PORT = "port"


class Mode(StrEnum):
    """full: the port runs on its own; isolated: teacher-forced on the reference's values; both."""

    FULL = "full"
    ISOLATED = "isolated"
    BOTH = "both"


class Outcome(StrEnum):
    """A run's verdict; its exit code is `EXIT_CODES[outcome]`."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


EXIT_CODES = {Outcome.PASS: 0, Outcome.FAIL: 1, Outcome.ERROR: 2}


class Status(StrEnum):
    """How one check came out. The noise detector's reasons are statuses of `frames_noise`."""

    OK = "ok"
    MISMATCH = "mismatch"
    SHAPE = "shape"
    NONFINITE = "nonfinite"
    MISSING_PORT = "missing_port"
    MISSING_REFERENCE = "missing_reference"
    REFEREE_EQUIVALENT = "referee_equivalent"  # failed its tolerance, judged equivalent by the fp64 referee
    NOISE = "noise"
    PERIODIC = "periodic"
    CONSTANT = "constant"
    SATURATED = "saturated"


class Role(StrEnum):
    """A failing check's place in the run: the cause of a divergence, or downstream of an earlier one."""

    CAUSE = "cause"
    DOWNSTREAM = "downstream"
