"""--plugin: import a file or module before either pipeline is built.

A plugin may register a family adapter (parity.families.register), register a port with
SGLang's registry, or patch the code under test (e.g. a fault-injection plugin).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from parity.errors import ParityError


def load(spec: str) -> ModuleType:
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ParityError(f"plugin file {spec} does not exist")
        name = f"parity_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ParityError(f"plugin file {spec} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise ParityError(f"plugin {spec} failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(spec)
    except Exception as exc:
        raise ParityError(f"plugin module {spec} failed to import: {type(exc).__name__}: {exc}") from exc


def load_all(specs: list[str]) -> list[str]:
    """Import every plugin, in order; returns their names for the report."""
    return [load(spec).__name__ for spec in specs]
