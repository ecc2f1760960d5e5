"""Packaging, checked without installing: fixtures/ installs under a name no other distribution uses, its
case files ship as package data, and parity finds builders and cases through that package."""

import ast
import re
import tomllib
from pathlib import Path

from parity import cases, fixture_cache

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_pyproject_installs_the_fixtures_folder_as_parity_fixtures():
    assert cases.FIXTURES_PACKAGE == "parity_fixtures"
    assert SETUPTOOLS["package-dir"]["parity_fixtures"] == "fixtures"
    assert "parity_fixtures" in SETUPTOOLS["packages"]
    # `fixtures` is another PyPI distribution's import name: nothing may install under it
    assert "fixtures" not in SETUPTOOLS["packages"] and "fixtures" not in SETUPTOOLS["package-dir"]


def test_every_bundled_case_file_is_package_data():
    toml_files = {p.relative_to(FIXTURES) for p in FIXTURES.glob("cases/*.toml")}
    assert toml_files
    globs = SETUPTOOLS["package-data"].get("parity_fixtures", []) + SETUPTOOLS["package-data"].get("*", [])
    shipped = {p.relative_to(FIXTURES) for pattern in globs for p in FIXTURES.glob(pattern) if p.is_file()}
    assert toml_files <= shipped, f"case files not shipped: {sorted(map(str, toml_files - shipped))}"


def test_bundled_cases_and_builders_are_found_through_the_package():
    package = cases.fixtures_package()
    assert package.__name__ == "parity_fixtures"
    assert cases.fixtures_dir() == FIXTURES.resolve()  # this checkout's folder, installed editable or not
    assert set(cases.bundled()) == {p.stem for p in FIXTURES.glob("cases/*.toml")}
    for case in cases.bundled().values():
        if case.fixture:
            assert (cases.fixtures_dir() / f"{case.fixture}.py").is_file(), case.name


def test_builders_import_each_other_relatively_never_as_fixtures():
    for path in sorted(FIXTURES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not any(n == "fixtures" or n.startswith("fixtures.") for n in names), f"{path.name}: {names}"


def test_source_scan_follows_relative_and_installed_name_imports():
    source = """
from . import components, qwen_image_tiny as qwen
from .tokenizers_offline import byte_vocab
from parity_fixtures.wan_t2v_tiny import umt5_encoder
from parity_fixtures import sd3_tiny
import parity_fixtures.flux_tiny
from .. import elsewhere
from fixtures import not_ours
import torch

def build():
    from .zimage_tiny import build as inner
"""
    found = fixture_cache.imported_fixtures(source)
    assert found == {
        "components",
        "qwen_image_tiny",
        "tokenizers_offline",
        "wan_t2v_tiny",
        "sd3_tiny",
        "flux_tiny",
        "zimage_tiny",
    }


def test_every_builders_sources_cover_what_it_imports():
    names = {p.name for p in fixture_cache.sources("qwen_image_layered_tiny")}
    assert names == {
        "qwen_image_layered_tiny.py",
        "qwen_image_edit_tiny.py",
        "qwen_image_tiny.py",
        "components.py",
        "tokenizers_offline.py",
    }
    for case in cases.bundled().values():
        if case.fixture:
            sources = {p.name for p in fixture_cache.sources(case.fixture)}
            text = (cases.fixtures_dir() / f"{case.fixture}.py").read_text()
            # the builder's own relative imports, read apart from the cache's parser
            relative = set(re.findall(r"^from \.(\w+) import", text, re.MULTILINE))
            assert sources >= {f"{case.fixture}.py"} | {f"{name}.py" for name in relative}, case.fixture
