"""parity's pytest plugin (the `pytest11` entry point), run by pytest's own `pytester` in fresh pytest
sessions: outcomes, messages and report paths of marked tests and of the `parity_case` fixture."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pytest_plugin" / "test_port_parity.py"


def test_the_plugin_is_registered_with_its_marker_and_imports_nothing_heavy(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.parity(target, **options): run this parity case*"])
    # Loaded in every pytest run of this environment: it must not bring torch or pandas along.
    probe = "import sys, parity.pytest_plugin; print(sorted({'torch', 'pandas', 'sglang'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"


def test_a_case_that_cannot_run_makes_the_test_an_error_with_one_line(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parity("no-such-case")
        def test_marked():
            pass

        def test_fixture(parity_case):
            parity_case("no-such-case")

        def test_unknown_option(parity_case):
            parity_case("flux-tiny", colour="red")

        @pytest.mark.parity("flux-tiny", mode="fast")
        def test_bad_mode():
            pass
        """
    )
    result = pytester.runpytest("-rE")
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_marked*",
            "parity: error: no bundled case or directory named 'no-such-case'*",
            "*ERROR at call of test_fixture*",
            "parity: error: no bundled case or directory named 'no-such-case'*",
            "*ERROR at call of test_unknown_option*",
            "parity: error: flux-tiny: unknown option(s) ?'colour'?: run options are mode, plugins*",  # ? for [ ]
            "*ERROR at setup of test_bad_mode*",
            "parity: error: flux-tiny: mode must be one of *",
        ]
    )
    assert "Traceback" not in result.stdout.str() and "another exception" not in result.stdout.str()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_run_whose_verdict_is_error_is_a_test_error_naming_its_report(pytester):
    pytester.makepyfile(
        """
        def test_cuda(parity_case):
            parity_case("flux-tiny", device="cuda")
        """
    )
    result = pytester.runpytest("-rE", f"--parity-reports={pytester.path / 'reports'}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*parity: error: --device cuda, but torch sees no CUDA device*report: *report.md)*"])
    (report,) = (pytester.path / "reports").glob("*/flux-tiny-float32/report.json")
    assert json.loads(report.read_text())["verdict"] == "error"


@pytest.mark.pipeline
def test_the_example_passes_a_clean_port_and_fails_a_broken_one_at_its_first_divergence(pytester):
    reports = pytester.path / "reports"
    # --runxfail: the example's strict xfail reported as the plain failure it is, its message shown
    result = pytester.runpytest_subprocess(
        str(EXAMPLE), "--runxfail", "-rA", "-p", "no:cacheprovider", f"--parity-reports={reports}", timeout=900
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "FAILED" in out and "flux-tiny [float32, cpu, full]: FAIL" in out
    assert "Loading required modules" not in out  # SGLang's bars went to libraries.log, not pytest's capture
    assert "first divergence: stage=denoising, tensor=noise_pred, step=0" in out
    clean, broken = (
        reports / f"examples_pytest_plugin_test_port_parity.py_{name}" / "flux-tiny-float32"
        for name in ("test_flux_port_matches_diffusers", "test_a_broken_port_is_caught")
    )
    assert f"report: {broken / 'report.md'}" in out
    assert f"report: {clean / 'report.md'}" in out  # the passing test's parity section (-rA)
    assert json.loads((clean / "report.json").read_text())["verdict"] == "pass"
    assert json.loads((broken / "report.json").read_text())["first_divergence"]["tensor"] == "noise_pred"
