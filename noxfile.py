"""nox sessions: `parity` (every bundled case, and the noise calibration), `tests` (pytest),
`calibrate` (the noise calibration alone), `bench` (timings), `lint` (ruff), `mutation` (mutation
testing of the pure modules).

All sessions share one virtualenv, .nox/shared, installed once and reused while pyproject.toml
is unchanged: sglang[diffusion] takes minutes to install, so a CI run pays for it once, not once
per session. It is installed with uv when uv is on PATH (measured 1.9x faster than pip for this
environment, bytecode compiled by both: docs/performance.md), else with pip.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
ENV = ROOT / ".nox" / "shared"
STAMP = ENV / ".installed-from"

nox.options.sessions = ["parity", "tests"]


def shared_python(session: nox.Session) -> str:
    """The shared venv's python, (re)installing the project when pyproject.toml changed: with uv when it
    is on PATH, else with pip. Either venv works with either installer (uv seeds its venv with pip)."""
    python = ENV / "bin" / "python"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    uv = shutil.which("uv")
    if not python.exists():
        if uv:
            session.run(uv, "venv", "--seed", "--python", sys.executable, str(ENV), external=True)
        else:
            session.run(sys.executable, "-m", "venv", str(ENV), external=True)
    if not STAMP.exists() or STAMP.read_text() != want:
        if uv:
            # --compile-bytecode: pip compiles at install, uv does not; where PYTHONDONTWRITEBYTECODE is set,
            # every `python -m parity` would then compile sglang, diffusers and transformers again (+12 s a run)
            session.run(
                uv,
                "pip",
                "install",
                "--compile-bytecode",
                "--python",
                str(python),
                "-e",
                f"{ROOT}[test]",
                external=True,
            )
        else:
            session.run(str(python), "-m", "pip", "install", "--upgrade", "pip", external=True)
            session.run(str(python), "-m", "pip", "install", "-e", f"{ROOT}[test]", external=True)
        STAMP.write_text(want)
    return str(python)


@nox.session(venv_backend="none")
def parity(session: nox.Session) -> None:
    """Run every bundled case in fp32 and bf16 (full and isolated mode) and the noise calibration;
    fail if any run misses its expectation or the calibration has a false flag or a miss."""
    python = shared_python(session)
    session.run(python, "-m", "parity.suite", *session.posargs, external=True)
    session.run(python, "-m", "parity.calibrate", external=True)


@nox.session(venv_backend="none")
def calibrate(session: nox.Session) -> None:
    """The noise detector's calibration table, written to reports/noise-calibration.{md,csv}."""
    python = shared_python(session)
    session.run(python, "-m", "parity.calibrate", *session.posargs, external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite (pytest's exit code 5, 'no tests collected', fails the session)."""
    python = shared_python(session)
    session.run(python, "-m", "pytest", *session.posargs, external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Where the time of one `parity run flux-tiny` goes on this machine."""
    python = shared_python(session)
    session.run(python, "-m", "parity.bench", *session.posargs, external=True)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff on the code and tests, and the type checker (mypy) on parity/."""
    python = shared_python(session)
    session.run(python, "-m", "ruff", "check", "parity", "fixtures", "tests", "noxfile.py", external=True)
    session.run(python, "-m", "mypy", external=True)  # [tool.mypy] in pyproject.toml: parity/


# Mutation testing (`nox -s mutation`): each module with the fast unit tests that must kill its mutants.
# One line per module; e.g. "compare": ["tests/test_compare_verdict.py"] adds parity/compare.py.
# compare and verdict: the tests that judge synthetic pairs (checks, verdicts, results, hints, reports).
JUDGING_TESTS = [
    "tests/test_compare_verdict.py",
    "tests/test_compare_properties.py",
    "tests/test_verdict_properties.py",
    "tests/test_results.py",
    "tests/test_hints.py",
    "tests/test_report.py",
    "tests/test_referee_components.py",
]
MUTATION_MODULES: dict[str, list[str]] = {
    "metrics": ["tests/test_metrics.py", "tests/test_metrics_properties.py"],
    "tolerance": ["tests/test_tolerance.py"],
    "align": ["tests/test_align.py"],
    "noise": ["tests/test_noise.py", "tests/test_noise_detectors.py"],
    "compare": JUDGING_TESTS,
    "verdict": JUDGING_TESTS,
}
MUTATION_MAX_SURVIVORS = 0.10  # per module: the share of mutants that may survive unaccepted
MUTATION_ACCEPTED = ROOT / "tests" / "mutation_survivors.toml"  # survivors accepted, each with its reason
MUTATION_DIR = ROOT / "build" / "mutation"


@nox.session(venv_backend="none")
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the pure modules in MUTATION_MODULES with their fast unit tests,
    in a fresh copy under build/mutation; prints each module's score and fails if a module has more
    than 10 % survivors not accepted in tests/mutation_survivors.toml. `nox -s mutation -- metrics`
    runs one module. To look at the mutants afterwards: `cd build/mutation && mutmut browse`
    (or `mutmut show NAME`), with the shared venv's mutmut."""
    python = shared_python(session)
    modules = session.posargs or list(MUTATION_MODULES)
    unknown = sorted(set(modules) - set(MUTATION_MODULES))
    if unknown:
        session.error(f"not in MUTATION_MODULES: {unknown}")
    tests = sorted({test for module in modules for test in MUTATION_MODULES[module]})
    shutil.rmtree(MUTATION_DIR, ignore_errors=True)
    MUTATION_DIR.mkdir(parents=True)
    for tree in ("parity", "tests"):
        shutil.copytree(ROOT / tree, MUTATION_DIR / tree, ignore=shutil.ignore_patterns("__pycache__"))
    config = {
        "source_paths": ["parity"],  # the whole package is copied (the mutants import its other modules)
        "only_mutate": [f"parity/{module}.py" for module in modules],
        "pytest_add_cli_args_test_selection": tests,
        # the fast tests only; Hypothesis's "ci" profile: derandomized (every run tries the same
        # examples), no example database, no deadline (a slow, loaded machine is no kill)
        "pytest_add_cli_args": ["-m", "not pipeline", "--hypothesis-profile=ci", "-p", "no:cacheprovider"],
    }
    lines = "\n".join(f"{key} = {_toml_list(value)}" for key, value in config.items())
    pyproject = (ROOT / "pyproject.toml").read_text()
    (MUTATION_DIR / "pyproject.toml").write_text(f"{pyproject}\n[tool.mutmut]\n{lines}\n")
    # One thread per test process: the mutants run in processes forked from one that ran torch, and
    # two of them at a time keep a 2-core machine busy.
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    mutmut = [str(Path(python).parent / "mutmut")]
    with session.chdir(MUTATION_DIR):
        session.run(*mutmut, "run", "--max-children", "2", env=env, external=True, silent=True)
        listing = session.run(*mutmut, "results", "--all", "true", external=True, silent=True, log=False)
        status = dict(re.findall(r"^\s*(\S+): (.+)$", listing, re.MULTILINE))
        survivors = [name for name, state in status.items() if state in ("survived", "no tests")]
        diffs = {name: session.run(*mutmut, "show", name, external=True, silent=True, log=False) for name in survivors}
    accepted = tomllib.loads(MUTATION_ACCEPTED.read_text()).get("survivor", [])
    failures: list[str] = []
    used: set[int] = set()
    print(f"{'module':<12}{'mutants':>8}{'killed':>8}{'timeout':>8}{'survived':>9}{'accepted':>9}  score")
    for module in modules:
        mine = {name: state for name, state in status.items() if name.startswith(f"parity.{module}.")}
        counts = {state: sum(s == state for s in mine.values()) for state in set(mine.values())}
        unaccepted = []
        for name in sorted(n for n in survivors if n in mine):
            function, change = _mutant_change(name, diffs[name])
            match = next(
                (
                    i
                    for i, a in enumerate(accepted)
                    if (a["module"], a["function"], a["mutation"]) == (module, function, change)
                ),
                None,
            )
            if match is None:
                unaccepted.append(f"  {name} ({mine[name]}) in {function}: {change}")
            else:
                used.add(match)
        killed, timeout = counts.get("killed", 0), counts.get("timeout", 0)
        survived = counts.get("survived", 0) + counts.get("no tests", 0)
        other = {state: n for state, n in counts.items() if state not in ("killed", "timeout", "survived", "no tests")}
        total = len(mine)
        score = (killed + timeout) / total if total else 0.0
        print(
            f"{module:<12}{total:>8}{killed:>8}{timeout:>8}{survived:>9}{survived - len(unaccepted):>9}"
            f"  {score:.1%}" + (f"  {other}" if other else "")
        )
        if not total:
            failures.append(f"{module}: no mutants")
        if other:
            failures.append(f"{module}: mutants neither killed nor survived: {other}")
        if len(unaccepted) > MUTATION_MAX_SURVIVORS * total:
            failures.append(
                f"{module}: {len(unaccepted)} of {total} mutants survive unaccepted "
                f"(more than {MUTATION_MAX_SURVIVORS:.0%}):\n" + "\n".join(unaccepted)
            )
        elif unaccepted:
            print("  surviving, not in tests/mutation_survivors.toml:\n" + "\n".join(unaccepted))
    stale = [a for i, a in enumerate(accepted) if i not in used and a["module"] in modules]
    for a in stale:
        print(f"accepted survivor no longer survives (remove it): {a['module']} {a['function']}: {a['mutation']}")
    if failures:
        session.error("\n".join(failures))


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "]"


def _mutant_change(name: str, diff: str) -> tuple[str, str]:
    """(function, "removed line => added line") of a mutant, from its name and `mutmut show` diff:
    how tests/mutation_survivors.toml names it (stable when other mutants come or go, unlike its number)."""
    mangled = name.partition("__mutmut_")[0].rpartition(".")[2]  # x_func or xǁClassǁmethod
    function = ".".join(part for part in mangled.split("ǁ")[1:]) if "ǁ" in mangled else mangled[2:]
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    removed = " | ".join(" ".join(line[1:].split()) for line in changed if line.startswith("-"))
    added = " | ".join(" ".join(line[1:].split()) for line in changed if line.startswith("+"))
    return function, f"{removed} => {added}"
