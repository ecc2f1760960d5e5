"""parity: numerical parity between a Diffusers pipeline and its SGLang port.

The Python API (README, "Python API"): `run_case(case, out_dir, ...)` runs one case and writes its
report (its case from `parity.cases.resolve(name)`); `load_report(dir)` reads a report's checks back as
a pandas DataFrame; `compare_reports(a, b)` is `parity compare`. They are imported on first use, so
`import parity` stays cheap: `run_case` brings torch, the other two pandas only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "compare_reports", "load_report", "run_case"]

if TYPE_CHECKING:
    from parity.reports import compare as compare_reports
    from parity.reports import load_report
    from parity.session import run_case

_LAZY = {
    "run_case": ("parity.session", "run_case"),
    "load_report": ("parity.reports", "load_report"),
    "compare_reports": ("parity.reports", "compare"),
}
_SUBMODULES = ("cases", "reports")  # `parity.cases.resolve(...)` after a bare `import parity`


def __getattr__(name: str) -> Any:
    """The API's functions, each imported from its module when first asked for."""
    if name in _SUBMODULES:
        return importlib.import_module(f"parity.{name}")
    if name not in _LAZY:
        raise AttributeError(f"module 'parity' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
