"""File output: every file parity writes goes through `write_atomic`, so a reader sees the old file
or the new one, never half of one; files and directories get the usual permissions (0644 / 0755
under the common umask 022), not the 0600 of a temporary file."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

# Read once, at import (single-threaded): os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def created_mode(directory: bool = False) -> int:
    """The mode a plainly created file (0666) or directory (0777) gets under the process's umask."""
    return (0o777 if directory else 0o666) & ~_UMASK


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, created_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_safe(value: Any) -> Any:
    """What report.json holds: JSON has no NaN/Infinity, so NaN becomes null and infinities the strings
    "inf" / "-inf", through dicts, lists and tuples."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
