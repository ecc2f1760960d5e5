"""Build bundled tiny models (fixtures/<name>.py) offline, once, into a cache directory.

The cache key covers the builder's source and the versions of the libraries that write the
files, so a changed builder or library gets a fresh build and an unchanged one is reused.
A build goes to a temporary directory that is renamed into place: a crashed build never
leaves a half-written model behind.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from parity.cases import REPO_ROOT
from parity.errors import ParityError

FIXTURES_DIR = REPO_ROOT / "fixtures"
_KEY_PACKAGES = ("torch", "diffusers", "transformers", "tokenizers", "safetensors")


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "parity" / "fixtures"
    return Path(os.environ.get("PARITY_CACHE_DIR", default))


_FIXTURE_IMPORT = re.compile(r"^\s*(?:from\s+fixtures(?:\.(\w+))?\s+import\s+([\w ,]+)|import\s+fixtures\.(\w+))", re.M)


def sources(name: str) -> list[Path]:
    """The builder's file and every fixtures/ module it imports, transitively (so an edit to one
    family's builder does not rebuild every other family's fixture)."""
    found: dict[str, Path] = {}
    todo = [name]
    while todo:
        module = todo.pop()
        path = FIXTURES_DIR / f"{module}.py"
        if module in found or not path.is_file():
            continue
        found[module] = path
        for submodule, names, plain in _FIXTURE_IMPORT.findall(path.read_text()):
            if submodule or plain:
                todo.append(submodule or plain)
            else:  # `from fixtures import a, b as c`: each may be a module
                todo += [n.split(" as ")[0].strip() for n in names.split(",")]
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
    if not (FIXTURES_DIR / f"{name}.py").is_file():
        raise ParityError(f"no fixture builder fixtures/{name}.py")
    module = importlib.import_module(f"fixtures.{name}")
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
