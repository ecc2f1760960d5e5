"""Build bundled tiny models (fixtures/<name>.py, installed as parity_fixtures.<name>) offline, once,
into a cache directory.

The cache key covers the builder's source and the versions of the libraries that write the
files, so a changed builder or library gets a fresh build and an unchanged one is reused.
A build goes to a temporary directory that is renamed into place: a crashed build never
leaves a half-written model behind.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from parity.cases import FIXTURES_PACKAGE, fixtures_dir
from parity.errors import ParityError

_KEY_PACKAGES = ("torch", "diffusers", "transformers", "tokenizers", "safetensors")


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parity" / "fixtures"
    return Path(os.environ.get("PARITY_CACHE_DIR", default))


def imported_fixtures(source: str) -> set[str]:
    """The names in the fixtures package that a builder's source imports, each maybe a module: relative
    imports (`from .components import X`, `from . import a, b as c`) and absolute ones through the
    installed name (`from parity_fixtures.a import X`, `from parity_fixtures import a`, `import parity_fixtures.a`),
    at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                package, _, rest = alias.name.partition(".")
                if package == FIXTURES_PACKAGE and rest:
                    found.add(rest.partition(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                inside = node.module
            elif node.level == 0 and node.module and node.module.partition(".")[0] == FIXTURES_PACKAGE:
                inside = node.module.partition(".")[2] or None
            else:
                continue
            if inside:
                found.add(inside.partition(".")[0])
            else:  # `from . import a, b as c`: each may be a module
                found |= {alias.name for alias in node.names}
    return found


def sources(name: str) -> list[Path]:
    """The builder's file and every fixtures module it imports, transitively (so an edit to one
    family's builder does not rebuild every other family's fixture)."""
    directory = fixtures_dir()
    found: dict[str, Path] = {}
    todo = [name]
    while todo:
        module = todo.pop()
        path = directory / f"{module}.py"
        if module in found or not path.is_file():
            continue
        found[module] = path
        todo += sorted(imported_fixtures(path.read_text()))
    return sorted(found.values())


@functools.cache
def _package_versions() -> str:
    """Read once per process: importlib.metadata scans site-packages on every call."""
    return "".join(f"{package}=={metadata.version(package)}" for package in _KEY_PACKAGES)


def cache_key(name: str) -> str:
    digest = hashlib.sha256()
    for source in sources(name):
        digest.update(source.name.encode() + source.read_bytes())
    digest.update(_package_versions().encode())
    return f"{name}-{digest.hexdigest()[:16]}"


def build(name: str, out_dir: Path) -> None:
    directory = fixtures_dir()  # imports the package under its installed name, also from a checkout
    if not (directory / f"{name}.py").is_file():
        raise ParityError(f"no fixture builder {name}.py in {directory}")
    module = importlib.import_module(f"{FIXTURES_PACKAGE}.{name}")
    module.build(out_dir)


def ensure(name: str) -> tuple[Path, bool]:
    """The cached model directory for fixture `name`, and whether it was built just now."""
    target = cache_root() / cache_key(name)
    if (target / "model_index.json").is_file():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        build(name, tmp)
        try:
            tmp.rename(target)
        except OSError:  # a concurrent build won the race; use its result
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, True
