"""The schema of a case: every key with its type and range, checked before torch, diffusers or
sglang is imported, for case files and command-line flags alike. A problem is one line that names
where the value came from and the key: `my-case.toml: steps must be an integer >= 1, got "four"`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from parity import hub, parallel, tolerance
from parity.errors import ParityError

DTYPES = ("float32", "bfloat16")
DEVICES = ("cpu", "cuda")
PORT_OPS = ("auto", "kernels", "native", "both")
SIZE_MULTIPLE = 16  # every bundled family: the VAE's factor 8 times the DiT's 2x2 patches
MAX_SEED = 2**63  # torch.Generator.manual_seed takes a signed 64-bit integer

Rule = Callable[[Any], str | None]  # a value -> what is wrong with it, or None


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def integer(low: int, high: int | None = None, multiple: int = 1) -> Rule:
    wanted = f"an integer >= {low}" + (f" and < {high}" if high is not None else "")
    wanted += f", a multiple of {multiple}" if multiple > 1 else ""

    def rule(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        ok = ok and (high is None or value < high) and value % multiple == 0
        return None if ok else f"must be {wanted}, got {_shown(value)}"

    return rule


def number(low: float = 0.0) -> Rule:
    def rule(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok and value >= low else f"must be a finite number >= {low:g}, got {_shown(value)}"

    return rule


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {_shown(value)}"


def model_location(value: Any) -> str | None:
    """`model_dir`: a Diffusers model directory or a Hugging Face hub id; which one is decided where
    the case is loaded (a directory that exists wins: parity.cases)."""
    ok = isinstance(value, str) and value.strip() != ""
    return None if ok else f"must be a model directory or a Hugging Face hub id (owner/name), got {_shown(value)}"


def hub_id(value: Any) -> str | None:
    ok = isinstance(value, str) and hub.is_hub_id(value)
    return None if ok else f"must be a Hugging Face hub id (owner/name), got {_shown(value)}"


def hub_revision(value: Any) -> str | None:
    ok = isinstance(value, str) and value != "" and not any(c.isspace() for c in value)
    return None if ok else f"must be a branch, tag or commit hash of the hub repo, got {_shown(value)}"


def one_of(choices: tuple[str, ...]) -> Rule:
    def rule(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {_shown(value)}"

    return rule


def optional(inner: Rule) -> Rule:
    def rule(value: Any) -> str | None:
        return None if value is None else inner(value)

    return rule


def per_dtype(inner: Rule) -> Rule:
    """A value, or a table of values by dtype (`{ float32 = ..., bfloat16 = ... }`)."""

    def rule(value: Any) -> str | None:
        if not isinstance(value, Mapping):
            return inner(value)
        for dtype, entry in value.items():
            if dtype not in DTYPES:
                return f"has a table keyed by dtype: {_shown(dtype)} is not one of {', '.join(DTYPES)}"
            problem = inner(entry)
            if problem is not None:
                return f"[{dtype}] {problem}"
        return None

    return rule


def parallel_degrees(value: Any) -> str | None:
    """`tp=2,ulysses=2` (parity.parallel), checked for its syntax; the device's limits come with the case."""
    if not isinstance(value, str):
        return f'must be a string of degrees such as "tp=2" or "ulysses=2,cfg=2", got {_shown(value)}'
    try:
        parallel.parse(value, device="cuda")
    except ParityError as exc:
        return f"{_shown(value)}: {str(exc).split(': ', 1)[1]}"
    return None


SUITE_KEYS = {"default": "a boolean", "parallel": "a list of degrees", "parallel_all": "a list of degrees"}


def suite_table(value: Any) -> str | None:
    """`[suite]`: how `nox -s parity` runs the case (parity.suite): `default = false` leaves it to
    `--all`; `parallel` / `parallel_all` list port degrees to run it at too (by default / with --all)."""
    if not isinstance(value, Mapping):
        return f"must be a table (default, parallel, parallel_all), got {_shown(value)}"
    for key, entry in value.items():
        if key not in SUITE_KEYS:
            return f"has an unknown key {_shown(key)}; known: {', '.join(SUITE_KEYS)}"
        if key == "default" and not isinstance(entry, bool):
            return f"default must be true or false, got {_shown(entry)}"
        if key != "default":
            if not isinstance(entry, list):
                return f"{key} must be {SUITE_KEYS[key]}, got {_shown(entry)}"
            for degrees in entry:
                problem = parallel_degrees(degrees)
                if problem is not None:
                    return f"{key} {problem}"
    return None


def tolerance_table(value: Any) -> str | None:
    """Problems come back as `tolerance...: ...`, already naming the key (e.g. `tolerance.frames`)."""
    if not isinstance(value, Mapping):
        return f"must be a table of tolerance kinds or tensors, got {_shown(value)}"
    try:
        tolerance.check_overrides(value, "tolerance")
    except ParityError as exc:
        return str(exc)
    return None


FIELDS: dict[str, Rule] = {
    "name": text,
    "family": optional(text),
    "fixture": optional(text),
    "model_dir": optional(model_location),
    # With a hub id in model_dir: the revision to run (default: main). Once resolved, model_dir is the
    # local snapshot, model_id the hub id and revision the snapshot's commit (so report.json has all three).
    "revision": optional(hub_revision),
    "model_id": optional(hub_id),
    "prompt": text,
    "negative_prompt": optional(text),
    "seed": integer(0, MAX_SEED),
    "height": integer(SIZE_MULTIPLE, multiple=SIZE_MULTIPLE),
    "width": integer(SIZE_MULTIPLE, multiple=SIZE_MULTIPLE),
    "steps": integer(1),
    "input_image": optional(text),
    "input_image_size": optional(integer(1)),
    "num_frames": optional(integer(1)),
    "guidance_scale": number(),
    "true_cfg_scale": optional(number()),
    "max_sequence_length": integer(1),
    "dtype": one_of(DTYPES),
    "device": one_of(DEVICES),
    "port_ops": one_of(PORT_OPS),
    "port_parallel": parallel_degrees,
    "expected": per_dtype(one_of(("pass", "fail"))),
    "reason": text,
    "expected_divergence": optional(per_dtype(text)),
    "tolerance": tolerance_table,
    "suite": suite_table,
}


def check(data: Mapping[str, Any], origin: str, flags: bool = False) -> None:
    """ParityError naming `origin` and the first bad key: unknown keys, then each value by its rule.
    `flags`: the keys are command-line options (`steps` is reported as `--steps`)."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ParityError(f"{origin}: unknown keys {unknown}; known: {sorted(FIELDS)}")
    for key, value in data.items():
        problem = FIELDS[key](value)
        if problem is not None:
            name = "--" + key.replace("_", "-") if flags else key
            named = problem if problem.startswith((f"{key}.", f"{key}:")) else f"{name} {problem}"
            raise ParityError(f"{origin}: {named}" if origin else named)
