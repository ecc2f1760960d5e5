"""Parity cases: what to run (model, prompt, seed, size, steps, dtype) and what to expect.

Bundled cases are TOML files in the repository's fixtures/cases/, shipped as package data of
`parity_fixtures` (the name fixtures/ installs under); a user's case file has the same keys.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from parity import case_schema, hub, parallel, stages
from parity.errors import ParityError

# The repository's fixtures/ folder installs as this package (pyproject.toml's package-dir): the name
# `fixtures` belongs to another PyPI distribution.
FIXTURES_PACKAGE = "parity_fixtures"
DTYPES, DEVICES, PORT_OPS = case_schema.DTYPES, case_schema.DEVICES, case_schema.PORT_OPS


@dataclass
class Case:
    name: str
    family: str | None = None
    fixture: str | None = None  # a builder in fixtures/ (parity_fixtures; built offline into the cache)
    model_dir: str | None = None  # or a Diffusers-layout directory of the user's, or a hub id (owner/name)
    revision: str | None = None  # with a hub id: the branch, tag or commit (parity.hub); resolved: the commit
    model_id: str | None = None  # set when a hub id is resolved (model_dir is then its local snapshot)
    prompt: str = "a photo of a cat"
    negative_prompt: str | None = None
    seed: int = 0
    height: int = 64
    width: int = 64
    steps: int = 4
    input_image: str | None = None  # image-conditioned families: "skimage:<photo>" or an image file
    input_image_size: int | None = None  # resize the input image to this square size first
    num_frames: int | None = None  # video: frames to generate (passed to both sides only when set)
    guidance_scale: float = 3.5
    true_cfg_scale: float | None = None  # with negative_prompt: real classifier-free guidance
    max_sequence_length: int = 512
    dtype: str = "float32"
    device: str = "cpu"
    port_ops: str = "auto"  # SGLang's kernels, its native ops, both, or auto: what runs on the device
    # The port's ranks (parity.parallel): "1", or degrees such as "tp=2", "ulysses=2,cfg=2"
    port_parallel: str = "1"
    # "fail" marks a known, documented divergence (see `reason`); a table {float32 = "fail", bfloat16 = "pass"}
    # sets it per dtype (a divergence below one dtype's resolution), dtypes it leaves out expect "pass".
    expected: str | dict[str, str] = "pass"
    reason: str = ""
    # With an expected failure: where it must first diverge, "<stage>/<tensor>" (or a table by dtype),
    # so the suite fails when a known divergence moves or another one appears before it.
    expected_divergence: str | dict[str, str] | None = None
    tolerance: dict[str, Any] = field(default_factory=dict)
    # How the bundled suite (parity.suite) runs it: { default = false } only with --all; parallel /
    # parallel_all: port degrees it also runs at (fp32, full mode), by default / with --all.
    suite: dict[str, Any] = field(default_factory=dict)

    def validate(self, origin: str | None = None) -> Case:
        """Every key by the case schema (parity.case_schema), then the rules between keys; `origin`
        names where the values came from in the message (default: the case)."""
        origin = origin or f"case {self.name}"
        case_schema.check(dataclasses.asdict(self), origin)
        self._validate_expected_divergence()
        if (self.true_cfg_scale is not None) != (self.negative_prompt is not None):
            raise ParityError(f"{origin}: true_cfg_scale and negative_prompt go together")
        parallel.check(self.degrees, self.device, self.port_parallel)
        if self.degrees.cfg > 1 and not self.cfg_enabled:
            raise ParityError(
                f"{origin}: port_parallel {self.port_parallel!r} splits the CFG branches, but the case has no CFG"
            )
        if (self.fixture is None) == (self.model_dir is None):
            raise ParityError(
                f"{origin}: give exactly one of 'fixture' or 'model_dir' (a model directory or a Hugging Face hub id)"
            )
        self._validate_hub(origin)
        return self

    def _validate_hub(self, origin: str) -> None:
        if self.model_id is not None and (self.model_dir is None or hub.looks_like_hub_id(self.model_dir)):
            raise ParityError(
                f"{origin}: model_id records the hub id a model_dir snapshot came from; give the hub id as model_dir"
            )
        if self.revision is not None and self.model_id is None and not self.from_hub:
            model = f"fixture {self.fixture}" if self.fixture else f"model directory {self.model_dir}"
            raise ParityError(
                f"{origin}: revision (--revision) goes with a Hugging Face hub id (owner/name), not {model}"
            )

    @property
    def from_hub(self) -> bool:
        """model_dir is a hub id still to be resolved (parity.hub) rather than a local directory."""
        return self.model_dir is not None and hub.looks_like_hub_id(self.model_dir)

    def _validate_expected_divergence(self) -> None:
        given = self.expected_divergence
        if given is None:
            return
        per_dtype = given if isinstance(given, dict) else dict.fromkeys(DTYPES, given)
        for dtype, where in per_dtype.items():
            stage, _, tensor = str(where).partition("/")
            if dtype not in DTYPES or stage not in stages.ORDER or not tensor:
                raise ParityError(
                    f"case {self.name}: expected_divergence must be '<stage>/<tensor>' (stages: "
                    f"{', '.join(stages.ORDER)}), or a table of them by dtype; got {where!r}"
                )
            if self.expected_for(dtype) != "fail":
                raise ParityError(f"case {self.name}: expected_divergence in {dtype}, where the case expects a pass")

    def expected_divergence_for(self, dtype: str | None = None) -> str | None:
        """Where an expected failure must first diverge in `dtype`, as "<stage>/<tensor>" (None: anywhere)."""
        given = self.expected_divergence
        if isinstance(given, dict):
            return given.get(dtype or self.dtype)
        return given if self.expected_for(dtype) == "fail" else None

    def expected_for(self, dtype: str | None = None) -> str:
        """The expected verdict in `dtype` (default: the case's own dtype)."""
        if isinstance(self.expected, dict):
            return self.expected.get(dtype or self.dtype, "pass")
        return self.expected

    @property
    def degrees(self) -> parallel.Degrees:
        """The port's parallel degrees (one rank unless `port_parallel` says otherwise)."""
        return parallel.parse(self.port_parallel, self.device)

    @property
    def cfg_enabled(self) -> bool:
        return self.negative_prompt is not None and (self.true_cfg_scale or 1.0) > 1.0

    def with_overrides(self, **overrides: Any) -> Case:
        """The case with the command line's values (None: not given), each checked as its flag."""
        given = {k: v for k, v in overrides.items() if v is not None}
        case_schema.check(given, "", flags=True)
        return dataclasses.replace(self, **given).validate()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_file(path: Path) -> Case:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ParityError(f"cannot read case file {path}: {exc}") from None
    data.setdefault("name", path.stem)
    case_schema.check(data, str(path))
    image = data.get("input_image")
    if image and not image.startswith("skimage:") and not Path(image).is_absolute():
        data["input_image"] = str((path.parent / image).resolve())
    model_dir = data.get("model_dir")
    if model_dir and not Path(model_dir).is_absolute():
        # Relative to the case file; `owner/name` with no such directory there is a hub id (parity.hub).
        local = path.parent / model_dir
        if local.exists() or not hub.is_hub_id(model_dir):
            data["model_dir"] = str(local.resolve())
    return Case(**data).validate(str(path))


@functools.cache
def fixtures_package() -> ModuleType:
    """The package of fixture builders and bundled cases: `parity_fixtures` as installed (a wheel or an
    editable install). In a source checkout run without installing, or through an install made before
    fixtures/ got that name, the checkout's fixtures/ folder, imported under the same name."""
    try:
        return importlib.import_module(FIXTURES_PACKAGE)
    except ModuleNotFoundError as exc:
        if exc.name != FIXTURES_PACKAGE:
            raise
    root = Path(__file__).resolve().parent.parent
    init = root / "fixtures" / "__init__.py"
    if not (root / "pyproject.toml").is_file() or not init.is_file():  # not a checkout: never another `fixtures`
        raise ParityError(f"package {FIXTURES_PACKAGE} not found: parity is installed without its fixtures")
    spec = importlib.util.spec_from_file_location(FIXTURES_PACKAGE, init, submodule_search_locations=[str(init.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[FIXTURES_PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[FIXTURES_PACKAGE]
        raise
    return module


def fixtures_dir() -> Path:
    """Where the fixture builders (<name>.py) and cases/ are, installed or in the checkout."""
    return Path(str(fixtures_package().__file__)).resolve().parent


def cases_dir() -> Path:
    return fixtures_dir() / "cases"


def bundled() -> dict[str, Case]:
    return {c.name: c for c in (load_file(p) for p in sorted(cases_dir().glob("*.toml")))}


def resolve(target: str, family: str | None = None) -> Case:
    """A bundled case name, a case file (.toml), a Diffusers model directory, or a Hugging Face hub id
    (owner/name, resolved when the run starts: parity.hub)."""
    cases = bundled()
    if target in cases:
        return cases[target]
    path = Path(target)
    if path.suffix == ".toml" and path.is_file():
        return load_file(path)
    if path.is_dir():
        return Case(name=path.name, family=family, model_dir=str(path.resolve())).validate()
    if path.exists():
        raise ParityError(f"{target} is not a directory, a case file (.toml) or a bundled case")
    if hub.looks_like_hub_id(target):
        return Case(name=target, family=family, model_dir=target).validate()
    raise ParityError(
        f"no bundled case or directory named {target!r} (bundled: {', '.join(sorted(cases))}; "
        "or a Hugging Face hub id, owner/name)"
    )
