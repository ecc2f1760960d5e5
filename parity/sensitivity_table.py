"""The table `parity sensitivity` writes: one row per perturbed tensor (the smallest relative size the
verdict detects, whether it is localized), the one-line summary per dtype, report.json's `sensitivity`
rows and report.md. Pure: reads parity.sensitivity's results, imports no pipeline library."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from parity import stages
from parity.sensitivity import HIGH, Search, Target


class Finding(StrEnum):
    """What probing one tensor found."""

    DETECTED = "detected"  # some size in [LOW, HIGH] is detected: the smallest is the row's
    BLIND = "blind"  # not even HIGH is detected
    FAILS_UNPERTURBED = "fails_unperturbed"  # its own check fails with no perturbation: not probed
    NOT_RECORDED = "not_recorded"  # the port records no such tensor
    NOT_INJECTABLE = "not_injectable"  # the teacher cannot hand it to the port (the shapes differ)


@dataclass(frozen=True)
class Row:
    target: Target
    finding: Finding
    search: Search | None = None
    # The port asked the teacher for this tensor (it consumed the perturbed value, so each probe ran the
    # port); False: nothing in the port reads it (the frames, the last block), its check alone judges it.
    fed: bool | None = None
    port_runs: int = 0
    seconds: float = 0.0

    @property
    def smallest(self) -> float | None:
        return self.search.smallest.eps if self.search is not None and self.search.smallest is not None else None

    @property
    def localized(self) -> bool | None:
        found = self.search.smallest if self.search is not None else None
        return None if found is None else found.localized

    @property
    def first_new(self) -> str | None:
        found = self.search.smallest if self.search is not None else None
        return None if found is None else found.first_new

    def as_dict(self) -> dict[str, Any]:
        """One row of report.json's `sensitivity.rows`."""
        probes = self.search.probes if self.search is not None else ()
        return {
            "stage": self.target.stage,
            "tensor": self.target.tensor,
            "step": self.target.step,
            "block": self.target.block,
            "label": self.target.label(),
            "finding": self.finding,
            "smallest_detected": self.smallest,
            "largest_missed": self.search.largest_missed if self.search is not None else None,
            "localized": self.localized,
            "first_new_failure": self.first_new,
            "fed_to_port": self.fed,
            "port_runs": self.port_runs,
            "seconds": round(self.seconds, 2),
            "probes": [
                {
                    "eps": p.eps,
                    "realized": p.realized,
                    "detected": p.detected,
                    "first_new_failure": p.first_new,
                    "localized": p.localized,
                }
                for p in probes
            ],
        }


_NAMES = {
    (stages.LATENT_PREPARATION, "latents"): "the initial latents",
    (stages.DENOISING, "latents"): "the scheduler output",
}
_TENSOR_NAMES = {
    "prompt_embeds": "the prompt embeddings",
    "sigmas": "the sigmas",
    "timesteps": "the timesteps",
    "dit_input": "the DiT input",
    "noise_pred": "the DiT output",
    "vae_input": "the VAE input",
    "frames": "the frames",
}


def describe(target: Target) -> str:
    """A person's name for the tensor: "the DiT output", "block transformer_blocks.0's hidden_states"."""
    if target.block is not None:
        return f"block {target.block}'s {target.tensor}"
    return _NAMES.get((target.stage, target.tensor)) or _TENSOR_NAMES.get(target.tensor, target.tensor)


def size(eps: float | None) -> str:
    """A relative size as `3.2e-2`, `1e-7` (two significant digits, no exponent padding)."""
    if eps is None or not math.isfinite(eps):
        return "–"
    mantissa, exponent = f"{eps:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


SHORT_DTYPES = {"float32": "fp32", "bfloat16": "bf16"}


def summary_line(dtype: str, rows: list[Row], unperturbed_fails_at: str | None = None) -> str:
    """One line per dtype: the tensors the verdict does not see even at HIGH, then where it is weakest among
    the others ("bf16: blind below 5.6e-2 in the DiT output"), those whose detection names another place
    first, and those not probed."""
    detected = [r for r in rows if r.finding is Finding.DETECTED]
    parts = []
    blind = [r for r in rows if r.finding is Finding.BLIND]
    if blind:  # the worst first: not even the largest size is seen
        parts.append(
            f"blind up to {size(HIGH)} in " + ", ".join(f"{describe(r.target)} ({r.target.label()})" for r in blind)
        )
    if detected:
        worst = max(detected, key=lambda r: r.smallest or 0.0)
        where = f"{describe(worst.target)} ({worst.target.label()})"
        parts.append(f"{'elsewhere ' if blind else ''}blind below {size(worst.smallest)} in {where}")
    astray = [r for r in detected if not r.localized]
    if astray:
        seen = [f"{describe(r.target)} (first seen at {r.first_new})" for r in astray]
        parts.append("not localized: " + ", ".join(seen))
    failing = [r for r in rows if r.finding is Finding.FAILS_UNPERTURBED]
    if failing:
        parts.append("not probed, failing unperturbed: " + ", ".join(describe(r.target) for r in failing))
    if unperturbed_fails_at:
        parts.append(f"the unperturbed run fails at {unperturbed_fails_at}, so only new failures count")
    return f"{SHORT_DTYPES.get(dtype, dtype)}: " + ("; ".join(parts) or "nothing probed")


def _yes_no(value: Any) -> str:
    return "–" if value is None else "yes" if value else "no"


def method(section: dict[str, Any]) -> str:
    """How the table was measured, and the unperturbed run it is measured against (report.md, report.html)."""
    unperturbed = section["unperturbed"]
    where = f", first divergence {unperturbed['first_divergence']}" if unperturbed.get("first_divergence") else ""
    return (
        f"Each probe hands the port, through isolated mode's teacher, the reference's value of one tensor plus a "
        f"perturbation of relative L2 size eps (a fixed Gaussian direction, seed {section['seed']}), records that "
        "value as the port's, and judges the run as isolated mode does. Detected: a check fails that the "
        "unperturbed run passes; localized: the first such check names the perturbed tensor (its own check; for the "
        "frames also their similarity and noise checks). Sizes searched: "
        f"{size(section['low'])} to {size(section['high'])}, by decades, then {section['halvings']} halvings on a "
        f"log scale. Unperturbed (isolated): {str(unperturbed['verdict']).upper()} "
        f"({unperturbed['passed']}/{unperturbed['checks']} checks{where})."
    )


def markdown(doc: dict[str, Any]) -> str:
    """report.md of a sensitivity report (report.json's document, so a cached one renders the same)."""
    section = doc["sensitivity"]
    case = doc.get("case") or {}
    out = io.StringIO()
    out.write(f"# Sensitivity: {case.get('name', '?')} ({case.get('dtype')}, {case.get('device')})\n\n")
    out.write(f"**{section['summary']}**\n\n")
    out.write(f"{method(section)}\n\n")
    out.write("| stage | tensor | step | block | smallest detected | largest missed | localized | first new failure ")
    out.write("| fed to the port | probes |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for row in section["rows"]:
        detected = size(row["smallest_detected"]) if row["finding"] == Finding.DETECTED else str(row["finding"])
        cells = [row["stage"], row["tensor"], _cell(row["step"]), _cell(row["block"]), detected]
        cells += [size(row["largest_missed"]), _yes_no(row["localized"]), row["first_new_failure"] or "–"]
        cells += [_yes_no(row["fed_to_port"]), str(len(row["probes"]))]
        out.write("| " + " | ".join(cells) + " |\n")
    seconds = section.get("seconds") or {}
    if seconds:
        out.write(
            "\n" + f"{section['port_runs']} port runs; seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items())
        )
        out.write("\n")
    out.write(f"\nCache key {section['key']} ({', '.join(f'{k} {v}' for k, v in section['key_inputs'].items())}).\n")
    return out.getvalue()


def _cell(value: Any) -> str:
    return "–" if value is None else str(value)
