"""`[tool.parity]` from the pyproject.toml of the current directory (tolerance overrides)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from parity.errors import ParityError


def tool_config(start: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    path = (start or Path.cwd()) / "pyproject.toml"
    if not path.is_file():
        return None, {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ParityError(f"{path}: invalid TOML: {exc}") from None
    section = data.get("tool", {}).get("parity", {})
    unknown = sorted(set(section) - {"tolerance"})
    if unknown:
        raise ParityError(f"{path} [tool.parity]: unknown keys {unknown}; known: ['tolerance']")
    return path, section
