"""nox sessions: `parity` (every bundled case, and the noise calibration), `tests` (pytest),
`calibrate` (the noise calibration alone), `bench` (timings), `lint` (ruff).

All sessions share one virtualenv, .nox/shared, installed once and reused while pyproject.toml
is unchanged: sglang[diffusion] takes minutes to install, so a CI run pays for it once, not once
per session.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
ENV = ROOT / ".nox" / "shared"
STAMP = ENV / ".installed-from"

nox.options.sessions = ["parity", "tests"]


def shared_python(session: nox.Session) -> str:
    """The shared venv's python, (re)installing the project when pyproject.toml changed."""
    python = ENV / "bin" / "python"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(ENV), external=True)
    if not STAMP.exists() or STAMP.read_text() != want:
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
    python = shared_python(session)
    session.run(python, "-m", "ruff", "check", "parity", "fixtures", "tests", "noxfile.py", external=True)
