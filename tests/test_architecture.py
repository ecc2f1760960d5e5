"""The house rules of parity's imports, read from the source with `ast`: the numerics never import a
pipeline library, adapters never import runners, no import runs back up the data flow, and no
module-level import cycle exists."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "parity"
LIBRARIES = ("sglang", "diffusers", "transformers")

# The data flow, bottom up: a module may import its own layer and the layers below, never above.
LAYERS = [
    {"vocab", "errors", "stages", "files", "progress", "config", "library_output", "report_dir", "interrupts"},
    {"trace", "tolerance", "metrics", "evidence", "capture", "numerics", "images", "image_files", "plugins", "hub"},
    {"saved_traces"},
    {"parallel"},
    {"align", "cases", "case_schema", "noise", "fixture_cache"},  # fixture_cache: the fixtures' build key
    {"compare", "rank_merge", "online"},
    {"verdict", "hints", "components", "referee", "frames", "sensitivity", "contract", "audit"},
    {"results"},
    # sensitivity_cache beside report_html: a run's page shows the table kept for its case (no torch, no run)
    {"report", "junit", "reports", "plots", "report_html", "sensitivity_table", "sensitivity_cache"},
    {"families", "inputs", "taps"},
    {"runners"},
    {"session", "rejudge", "sensitivity_run"},
    {"cli", "suite", "bench", "overhead", "margins", "calibrate", "__main__", "__init__", "pytest_plugin"},
]
# Modules that judge recorded tensors: fast to test on synthetic data, so no pipeline library.
NUMERICS = {"metrics", "tolerance", "compare", "verdict", "noise", "report", "results", "hints", "evidence"}
NUMERICS |= {"align", "components", "referee", "frames", "vocab", "stages", "trace", "rank_merge", "parallel", "online"}
NUMERICS |= {"junit", "reports", "plots", "report_html", "sensitivity", "sensitivity_table", "contract", "audit"}


def top(module: str) -> str:
    """`parity.runners.recorder` -> `runners`; `parity` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(path: Path, module: str, module_level_only: bool = False) -> set[str]:
    """Absolute names of what `module` imports (TYPE_CHECKING blocks left out: they run no code)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
        if module_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip |= {id(n) for n in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            submodules = {f"{base}.{alias.name}" for alias in node.names} & set(modules())
            found |= submodules or {base}  # `from parity import stages` imports parity.stages
    return found


def layer(module: str) -> int:
    name = top(module)
    for index, members in enumerate(LAYERS):
        if name in members:
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: place it in the data flow")


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_never_run_back_up_the_data_flow(module):
    path = modules()[module]
    for target in imports(path, module):
        if target.startswith("parity.") or target == "parity":
            assert layer(target) <= layer(module), f"{module} (layer {layer(module)}) imports {target}"


@pytest.mark.parametrize("module", sorted(m for m in modules() if top(m) in NUMERICS))
def test_the_numerics_import_no_pipeline_library(module):
    for target in imports(modules()[module], module):
        assert target.split(".")[0] not in LIBRARIES, f"{module} imports {target}"
        assert top(target) not in ("runners", "session", "families") or not target.startswith("parity"), target


def test_adapters_never_import_runners():
    for module, path in modules().items():
        if top(module) == "families":
            assert not any(top(t) == "runners" for t in imports(path, module) if t.startswith("parity")), module


def test_no_module_level_import_cycle():
    graph = {
        m: {t for t in imports(p, m, module_level_only=True) if t in modules() and t != m} for m, p in modules().items()
    }
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, node, target]))
            if target not in state:
                visit(target, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
