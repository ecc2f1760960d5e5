"""Where `parity sensitivity` keeps its tables, and whether a kept one still holds: one report directory per
case and dtype (reports/sensitivity/<case>-<dtype>/), its report.json keyed by a hash of what decides the
numbers (the case, its case file, the fixture's build key, the libraries' versions, the tolerances, the
method). A table whose key matches is shown again without running a pipeline (`parity sensitivity`, the
suite's summary); no torch is imported here, so reading one back takes a moment."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from parity import fixture_cache, sensitivity
from parity.cases import Case
from parity.config import tool_config
from parity.tolerance import DEFAULTS_BY_DEVICE

ROOT = Path("reports") / "sensitivity"
KIND = "sensitivity"  # report.json's `kind`: not a run's report (no schema_version, no checks)
METHOD = 2  # bump when a change to how probes are made or judged makes the kept tables stale
VERSIONED = ("parity", "sglang", "diffusers", "transformers", "torch")


def out_dir(case: Case, root: Path = ROOT) -> Path:
    """The case's table for its dtype: `<root>/<case>-<dtype>` (a hub id's '/' written '--')."""
    return Path(root) / f"{case.name.replace('/', '--')}-{case.dtype}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def key_inputs(case: Case, tensors: str | None = None, case_file: Path | None = None) -> dict[str, str]:
    """What the table depends on, each as a short string (report.md lists them): the case as resolved (its
    overrides included) and its file's bytes, the fixture's build key (its builder's source and the libraries
    that write it) or the model directory, the versions, the tolerances the verdict judges by, the method."""
    _, tool = tool_config()
    tolerances = repr(sorted(DEFAULTS_BY_DEVICE[case.device][case.dtype].items())) + repr(tool.get("tolerance"))
    model = fixture_cache.cache_key(case.fixture) if case.fixture else f"{case.model_dir}@{case.revision}"
    search = f"{sensitivity.LOW:g}..{sensitivity.HIGH:g} halvings {sensitivity.HALVINGS} seed {sensitivity.SEED}"
    return {
        "case": _digest(json.dumps(case.as_dict(), sort_keys=True, default=str).encode()),
        "case_file": _digest(case_file.read_bytes()) if case_file is not None and case_file.is_file() else "none",
        "model": model,
        "versions": ", ".join(f"{p} {_version(p)}" for p in VERSIONED),
        "tolerances": _digest(tolerances.encode()),
        "method": f"{METHOD}: {search}, tensors {tensors or 'default'}",
    }


def key(inputs: dict[str, str]) -> str:
    return _digest(json.dumps(inputs, sort_keys=True).encode())


def read(out: Path) -> dict[str, Any] | None:
    """A sensitivity report.json in `out`, or None (absent, unreadable, not a sensitivity table)."""
    try:
        doc = json.loads((Path(out) / "report.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == KIND and "sensitivity" in doc else None


def cached(out: Path, wanted: str) -> dict[str, Any] | None:
    """The table kept in `out` when its key is `wanted`, else None."""
    doc = read(out)
    return doc if doc is not None and doc["sensitivity"].get("key") == wanted else None


@dataclass(frozen=True)
class Kept:
    """The default table kept for a case and its dtype, read back, and whether its key holds for the case as
    it is now (`current`); when not, the key inputs that differ from those it was made for (`differing`)."""

    doc: dict[str, Any]
    path: Path  # its report.json
    current: bool
    differing: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        return str(self.doc["sensitivity"].get("summary"))


def kept(case: Case, root: Path = ROOT, case_file: Path | None = None) -> Kept | None:
    """The table kept for the case and its dtype (None: none is), checked against the key the default table
    (`parity sensitivity CASE`, no --tensors) would have now."""
    out = out_dir(case, root)
    doc = read(out)
    if doc is None:
        return None
    inputs = key_inputs(case, None, case_file)
    if doc["sensitivity"].get("key") == key(inputs):
        return Kept(doc, out / "report.json", True)
    made_for = doc["sensitivity"].get("key_inputs") or {}
    return Kept(doc, out / "report.json", False, tuple(k for k, v in inputs.items() if made_for.get(k) != v))


def summary(case: Case, root: Path = ROOT, case_file: Path | None = None) -> str | None:
    """The summary line of the default table kept for the case and its dtype, marked stale when its key no
    longer matches; None when none is kept."""
    found = kept(case, root, case_file)
    if found is None:
        return None
    if found.current:
        return found.summary
    return f"{found.summary} (stale: made for other inputs; `parity sensitivity {case.name}` redoes it)"
