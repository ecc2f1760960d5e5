"""pytest plugin (entry point `pytest11`, name `parity`): a parity case as a test.

    @pytest.mark.parity("flux-tiny", dtype="bfloat16")
    def test_flux_bf16():
        pass

    def test_flux(parity_case):
        report = parity_case("flux-tiny", dtype="float32")  # the RunReport, when it passes

Either runs the case through `parity.run_case` in the test's process: a pass passes, a fail fails the test
with the first divergence and its hints as the message (the console lines of `parity run`), an error (exit 2
kind: bad input, a side that could not run) makes the test an error with its one line. Keywords: `mode`,
`plugins`, `block_steps`, `referee`, `audit`, `save_traces`, `verbose` as `parity run`'s flags; any other keyword
overrides the case as its flag does (`dtype`, `steps`, `device`, ...). Reports go to the test's tmp_path,
or under `--parity-reports DIR` (one folder per test); the path is printed in the test's "parity" report
section and recorded as the `parity_report` property (JUnit XML).

Loaded by every pytest run where parity is installed (`-p no:parity` turns it off), so nothing heavy is
imported here: parity.session (torch, and the libraries when a case runs) only once a case runs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from parity.results import RunReport

# Keywords that say how to run; the others override the case (Case.with_overrides, as the CLI's flags).
RUN_OPTIONS = ("mode", "plugins", "block_steps", "referee", "audit", "save_traces", "verbose")
_REPORT = pytest.StashKey["RunReport"]()
_RUNS = pytest.StashKey[int]()
_ERROR = ("parity_outcome", "error")  # a user property: a case that could not run, shown as an error
_loaded: dict[str, str] = {}  # plugin spec -> module name: a file imported twice would patch twice


class CaseError(Exception):
    """A case that could not run (bad input, a side that failed: `parity run`'s exit 2)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "parity: Diffusers vs SGLang numerical parity")
    group.addoption(
        "--parity-reports",
        metavar="DIR",
        default=None,
        help="write each parity case's report under DIR/<test>/ (default: the test's tmp_path)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "parity(target, **options): run this parity case (a bundled name, case file, model directory or hub id) "
        "before the test body; the test fails with its first divergence, errors when the case cannot run. "
        f"Options: {', '.join(RUN_OPTIONS)}; other keywords override the case (dtype, steps, ...)",
    )


@pytest.fixture(autouse=True)
def _parity_marker(request: pytest.FixtureRequest) -> None:
    """A test marked `parity(...)`: the case runs at set-up (so one that cannot run is an error); whether it
    passed is judged when the test is called (pytest_runtest_call)."""
    marker = request.node.get_closest_marker("parity")
    if marker is None:
        return
    if len(marker.args) != 1:
        pytest.fail(f"@pytest.mark.parity takes one case (a name, case file or directory), got {marker.args}")
    try:
        request.node.stash[_REPORT] = _run(request, marker.args[0], dict(marker.kwargs))
        return
    except CaseError as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)  # outside the except: no "during handling of the above exception"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    report = item.stash.get(_REPORT, None)
    if report is not None and report.verdict.outcome == "fail":
        pytest.fail(_message(report, item), pytrace=False)


@pytest.fixture
def parity_report(request: pytest.FixtureRequest, _parity_marker: None) -> RunReport:
    """The RunReport of the test's `parity` marker (a marked test that reaches its body has passed)."""
    if _REPORT not in request.node.stash:
        pytest.fail("the parity_report fixture needs @pytest.mark.parity(...) on the test")
    return request.node.stash[_REPORT]


@pytest.fixture
def parity_case(request: pytest.FixtureRequest) -> Callable[..., RunReport]:
    """`parity_case(target, **options)`: run a case in the test body; returns its RunReport when it passes,
    fails the test with its first divergence, makes it an error when the case cannot run."""

    def run(target: str, **options: Any) -> RunReport:
        report = _run(request, target, options)
        if report.verdict.outcome == "fail":
            pytest.fail(_message(report, request.node), pytrace=False)
        return report

    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "call" and call.excinfo is not None and call.excinfo.errisinstance(CaseError):
        report.longrepr = str(call.excinfo.value)  # its one line, not a traceback through parity
        report.user_properties.append(_ERROR)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """A case that could not run in the test body is an error, as at set-up, not a failure."""
    if report.when == "call" and report.failed and _ERROR in report.user_properties:
        return "error", "E", "ERROR"
    return None


def _run(request: pytest.FixtureRequest, target: str, options: dict[str, Any]) -> RunReport:
    """One case through parity.run_case; CaseError (one line) when it cannot run."""
    from parity import cases
    from parity.errors import ParityError

    run = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cases.Case)})
    if unknown:
        raise CaseError(
            f"parity: error: {target}: unknown option(s) {unknown}: run options are {', '.join(RUN_OPTIONS)}; "
            "others override the case's keys (dtype, steps, seed, ...)"
        )
    modes, referees = ("full", "isolated", "both"), (None, "fp64")  # as `parity run --mode`, `--referee`, `--audit`
    if run.get("mode", "full") not in modes or run.get("referee") not in referees or run.get("audit") not in referees:
        raise CaseError(f"parity: error: {target}: mode must be one of {modes}, referee and audit None or 'fp64'")
    node = request.node
    try:
        case = cases.resolve(target, family=options.get("family")).with_overrides(**options)
        out = _out_dir(request, case.name, case.dtype)
        given = run.get("plugins", ())
        specs = [given] if isinstance(given, str) else [str(spec) for spec in given]  # a path or a list of them
        loaded = [_load_plugin(spec) for spec in specs]
        from parity.capture import BlockCapture
        from parity.session import run_case

        report = run_case(
            case,
            out,
            loaded,
            BlockCapture.parse(run.get("block_steps", "default")),
            run.get("mode", "full"),
            run.get("referee"),
            verbose=run.get("verbose", False),
            plugin_specs=specs,
            save_traces=run.get("save_traces", False),
            audit_mode=run.get("audit"),
        )
    except ParityError as exc:
        raise CaseError(f"parity: error: {exc.one_line()}") from None
    from parity.cli import console_lines

    node.user_properties.append(("parity_report", str(out / "report.md")))
    if report.verdict.outcome == "pass":  # a failure's or an error's message says it all, the path included
        node.add_report_section("call", "parity", "\n".join(console_lines(report, out)))
    if report.verdict.error:
        raise CaseError(f"parity: error: {report.verdict.error} (report: {out / 'report.md'})")
    return report


def _message(report: RunReport, node: pytest.Item) -> str:
    out = dict(node.user_properties).get("parity_report", "report.md")
    from parity.cli import console_lines

    return "\n".join(console_lines(report, Path(str(out)).parent))


def _out_dir(request: pytest.FixtureRequest, case: str, dtype: str) -> Path:
    """<root>/<case>-<dtype>, -2, -3 ... for a test's later cases; root: --parity-reports DIR/<test>, or tmp_path."""
    node = request.node
    runs = node.stash.get(_RUNS, 0) + 1
    node.stash[_RUNS] = runs
    name = f"{case.replace('/', '--')}-{dtype}" + (f"-{runs}" if runs > 1 else "")
    given = request.config.getoption("--parity-reports")
    if given:
        return Path(given) / re.sub(r"[^\w.\-]+", "_", node.nodeid).strip("_") / name
    return request.getfixturevalue("tmp_path") / name


def _load_plugin(spec: str) -> str:
    """Import a --plugin once per process (it patches for the rest of the session, as in `parity run`)."""
    from parity import plugins

    key = str(Path(spec).resolve()) if spec.endswith(".py") else spec
    if key not in _loaded:
        _loaded[key] = plugins.load(spec).__name__
    return _loaded[key]
