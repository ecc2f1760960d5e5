"""Parity cases: what to run (model, prompt, seed, size, steps, dtype) and what to expect.

Bundled cases are TOML files in fixtures/cases/; a user's case file has the same keys.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity import stages
from parity.errors import ParityError

REPO_ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = REPO_ROOT / "fixtures" / "cases"
DTYPES = ("float32", "bfloat16")
DEVICES = ("cpu", "cuda")
PORT_OPS = ("auto", "kernels", "native", "both")


@dataclass
class Case:
    name: str
    family: str | None = None
    fixture: str | None = None  # a builder in fixtures/ (built offline into the cache)
    model_dir: str | None = None  # or a Diffusers-layout directory of the user's
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
    # "fail" marks a known, documented divergence (see `reason`); a table {float32 = "fail", bfloat16 = "pass"}
    # sets it per dtype (a divergence below one dtype's resolution), dtypes it leaves out expect "pass".
    expected: str | dict[str, str] = "pass"
    reason: str = ""
    # With an expected failure: where it must first diverge, "<stage>/<tensor>" (or a table by dtype),
    # so the suite fails when a known divergence moves or another one appears before it.
    expected_divergence: str | dict[str, str] | None = None
    tolerance: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> Case:
        if self.dtype not in DTYPES:
            raise ParityError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device not in DEVICES:
            raise ParityError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.port_ops not in PORT_OPS:
            raise ParityError(f"--port-ops must be one of {', '.join(PORT_OPS)}, got {self.port_ops!r}")
        for name in ("height", "width", "steps", "max_sequence_length"):
            if getattr(self, name) <= 0:
                raise ParityError(f"{name} must be positive, got {getattr(self, name)}")
        if self.input_image_size is not None and self.input_image_size <= 0:
            raise ParityError(f"input_image_size must be positive, got {self.input_image_size}")
        if self.num_frames is not None and self.num_frames <= 0:
            raise ParityError(f"num_frames must be positive, got {self.num_frames}")
        if self.height % 16 or self.width % 16:
            raise ParityError(f"height and width must be multiples of 16, got {self.height}x{self.width}")
        per_dtype = self.expected if isinstance(self.expected, dict) else {self.dtype: self.expected}
        if not set(per_dtype) <= set(DTYPES) or not set(per_dtype.values()) <= {"pass", "fail"}:
            raise ParityError(f"case {self.name}: expected must be 'pass' or 'fail', or a table of them by dtype")
        self._validate_expected_divergence()
        if (self.true_cfg_scale is not None) != (self.negative_prompt is not None):
            raise ParityError(f"case {self.name}: true_cfg_scale and negative_prompt go together")
        if (self.fixture is None) == (self.model_dir is None):
            raise ParityError(f"case {self.name}: give exactly one of 'fixture' or 'model_dir'")
        return self

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
    def cfg_enabled(self) -> bool:
        return self.negative_prompt is not None and (self.true_cfg_scale or 1.0) > 1.0

    def with_overrides(self, **overrides: Any) -> Case:
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **given).validate()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_file(path: Path) -> Case:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ParityError(f"cannot read case file {path}: {exc}") from None
    data.setdefault("name", path.stem)
    known = {f.name for f in dataclasses.fields(Case)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ParityError(f"case file {path}: unknown keys {unknown}; known: {sorted(known)}")
    image = data.get("input_image")
    if image and not image.startswith("skimage:") and not Path(image).is_absolute():
        data["input_image"] = str((path.parent / image).resolve())
    if data.get("model_dir") and not Path(data["model_dir"]).is_absolute():
        data["model_dir"] = str((path.parent / data["model_dir"]).resolve())
    return Case(**data).validate()


def bundled() -> dict[str, Case]:
    return {c.name: c for c in (load_file(p) for p in sorted(CASES_DIR.glob("*.toml")))}


def resolve(target: str, family: str | None = None) -> Case:
    """A bundled case name, a case file (.toml), or a Diffusers model directory."""
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
    raise ParityError(f"no bundled case or directory named {target!r} (bundled: {', '.join(sorted(cases))})")
