"""JUnit XML (parity/junit.py, `parity run --junit`, the suite's reports/junit.xml), read back with
xml.etree against the JUnit schema's required attributes; no pipeline runs."""

import json
import xml.etree.ElementTree as ET

import pytest

from parity import junit, suite
from parity.cases import Case
from parity.cli import main

FIRST = {"stage": "denoising", "tensor": "hidden_states", "step": 0, "block": "transformer_blocks.1"}
HINT = {"at": "denoising/hidden_states step 0", "symptom": "a block differs", "likely_cause": "its attention"}
SUITE_ATTRS = ("name", "tests", "failures", "errors")  # what the JUnit schema requires of a <testsuite>


def _read(path):
    """The one <testsuite> of a JUnit file, its required attributes checked, and its testcases."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (testsuite,) = root.findall("testsuite")
    assert all(testsuite.get(key) is not None for key in SUITE_ATTRS)
    cases = testsuite.findall("testcase")
    assert all(case.get("classname") and case.get("name") for case in cases)
    assert int(testsuite.get("tests")) == len(cases)
    for key, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        assert int(testsuite.get(key)) == sum(case.find(tag) is not None for case in cases)
        assert root.get(key) == testsuite.get(key)
    return testsuite, cases


def _write(tmp_path, *runs):
    path = tmp_path / "junit.xml"
    junit.write(path, "parity", [junit.testcase(run) for run in runs])
    return _read(path)


def test_a_pass_a_failure_with_its_hint_and_an_error(tmp_path):
    passed = junit.Run("flux-tiny", "float32", "full", verdict="pass", seconds=1.5)
    failed = junit.Run(
        "flux-tiny",
        "bfloat16",
        "both",
        verdict="fail",
        first=FIRST,
        message="max abs 0.3 > atol 1e-3",
        hints=(HINT,),
        report="reports/flux-tiny-bfloat16/report.md",
        seconds=2.0,
    )
    errored = junit.Run("wan-tiny", "float32", "full", verdict="error", error="the port could not run: boom")
    testsuite, (ok, bad, broken) = _write(tmp_path, passed, failed, errored)
    assert (testsuite.get("tests"), testsuite.get("failures"), testsuite.get("errors")) == ("3", "1", "1")
    assert testsuite.get("time") == "3.500"
    assert (ok.get("classname"), ok.get("name"), ok.get("time")) == ("parity.flux-tiny", "float32-full", "1.500")
    assert list(ok) == []
    failure = bad.find("failure")
    assert bad.get("name") == "bfloat16-both" and failure.get("type") == "divergence"
    assert failure.get("message") == (
        "first divergence: denoising/hidden_states step 0 block transformer_blocks.1 (max abs 0.3 > atol 1e-3)"
    )
    assert failure.text.splitlines() == [
        "hint (denoising/hidden_states step 0): a block differs: likely its attention",
        "report: reports/flux-tiny-bfloat16/report.md",
    ]
    assert broken.find("error").get("message") == "the port could not run: boom"


def test_an_expected_failure_passes_and_says_which_divergence_it_expects(tmp_path):
    expected = junit.Expectation("fail", met=True, at="denoising/hidden_states", reason="bf16 rounding in RoPE")
    run = junit.Run("flux-tiny", "bfloat16", "both", verdict="fail", first=FIRST, expected=expected)
    testsuite, (case,) = _write(tmp_path, run)
    assert (testsuite.get("failures"), testsuite.get("errors")) == ("0", "0")
    assert case.find("failure") is None
    said = case.find("system-out").text
    assert said.splitlines()[0] == "expected to fail at denoising/hidden_states: bf16 rounding in RoPE"
    assert "first divergence: denoising/hidden_states step 0" in said


@pytest.mark.parametrize(
    ("verdict", "first", "expected", "message"),
    [
        (
            "pass",
            None,
            junit.Expectation("fail", False, "decoding/vae_input", "why"),
            "expected to fail at decoding/vae_input (why), but it passed",
        ),
        (
            "fail",
            FIRST,
            junit.Expectation("fail", False, "decoding/vae_input"),
            "first divergence: "
            "denoising/hidden_states step 0 block transformer_blocks.1; expected to fail at decoding/vae_input",
        ),
        (
            "fail",
            FIRST,
            junit.Expectation("pass", False),
            "first divergence: denoising/hidden_states step 0 block transformer_blocks.1; expected to pass",
        ),
        (
            "pass",
            None,
            junit.Expectation("pass", False, miss="the ranks against the port at one rank: fail"),
            "the ranks against the port at one rank: fail",
        ),
    ],
)
def test_a_run_that_misses_its_expectation_is_a_failure(tmp_path, verdict, first, expected, message):
    run = junit.Run("t", "float32", "full", "tp=2", verdict=verdict, first=first, expected=expected)
    testsuite, (case,) = _write(tmp_path, run)
    assert testsuite.get("failures") == "1" and case.get("name") == "float32-full-tp2"
    assert case.find("failure").get("message") == message and case.find("failure").get("type") == "expectation"


def test_the_first_divergence_message_is_read_from_the_comparison_that_decided(tmp_path):
    row = {**FIRST, "role": "cause", "message": "rel L2 0.2 > 5e-5"}
    doc = {
        "verdict": "fail",
        "first_divergence": FIRST,
        "decided_by": "isolated",
        "mode": "both",
        "case": {"name": "flux-tiny", "dtype": "float32", "port_parallel": "1"},
        "checks": [{**FIRST, "role": None, "message": ""}],
        "isolated": {"checks": [row]},
        "hints": [HINT],
        "error": None,
    }
    run = junit.run_from_doc(doc, "r/report.md", 3.0)
    assert (run.case, run.dtype, run.mode, run.degrees) == ("flux-tiny", "float32", "both", None)
    assert run.message == "rel L2 0.2 > 5e-5" and run.hints == (HINT,)
    assert junit.first_message({**doc, "first_divergence": None}) is None


def test_control_characters_and_markup_in_messages_survive_as_xml(tmp_path):
    run = junit.Run("a<b", "float32", "full", verdict="error", error='\x1b[31mbad "value" & <tag>\x1b[0m')
    _, (case,) = _write(tmp_path, run)
    assert case.get("classname") == "parity.a<b"
    assert case.find("error").get("message") == 'bad "value" & <tag>'


def _row(name, verdict, ok, expected="pass", pinned=None, degrees=None, error=None):
    return {
        "case": name + (f" @ {degrees}" if degrees else ""),
        "dtype": "float32",
        "verdict": verdict,
        "expected": expected + (f" at {pinned}" if pinned else ""),
        "ok": ok,
        "first_divergence": FIRST if verdict == "fail" else None,
        "seconds": 1.0,
        "line": "...",
        "name": name,
        "mode": "full" if degrees else "both",
        "degrees": degrees,
        "expected_verdict": expected,
        "pinned": pinned,
        "reason": "known",
        "miss": None,
        "message": "max abs 1 > 0",
        "hints": [HINT],
        "error": error,
        "report": f"reports/{name}/report.md",
    }


def test_the_suites_junit_counts_equal_its_rows(tmp_path):
    rows = [
        _row("flux-tiny", "pass", True),
        _row("flux-tiny", "fail", True, "fail", "denoising/hidden_states"),  # expected failure, as pinned
        _row("sd3-tiny", "pass", False, "fail", "decoding/vae_input"),  # passes where it should fail
        _row("wan-tiny", "fail", False),  # fails where it should pass
        _row("qwen-image-tiny", "error", False, error="the port could not run"),
        _row("qwen-image-tiny", "pass", True, degrees="ulysses=2"),
    ]
    skipped = [{"case": "flux-wide", "name": "bfloat16-both", "why": "device cuda; this machine has no GPU"}]
    suite.write_junit(tmp_path / "junit.xml", rows, skipped)
    testsuite, cases = _read(tmp_path / "junit.xml")
    bad = [r for r in rows if not r["ok"]]
    assert int(testsuite.get("tests")) == len(rows) + len(skipped)
    assert int(testsuite.get("failures")) + int(testsuite.get("errors")) == len(bad)
    assert (testsuite.get("errors"), testsuite.get("skipped"), testsuite.get("name")) == ("1", "1", "parity.suite")
    names = [(c.get("classname"), c.get("name")) for c in cases]
    assert names[5] == ("parity.qwen-image-tiny", "float32-full-ulysses2")
    assert cases[1].find("system-out").text.startswith("expected to fail at denoising/hidden_states: known")
    assert cases[-1].find("skipped").get("message") == "device cuda; this machine has no GPU"


def test_the_suites_rows_carry_what_junit_needs(tmp_path, monkeypatch):
    case = Case(name="t", fixture="flux_tiny", expected="fail", expected_divergence="decoding/vae_input").validate()
    doc = {
        "verdict": "fail",
        "first_divergence": FIRST,
        "checks": [{**FIRST, "role": "cause", "message": "max abs 0.5 > atol 1e-4"}],
        "hints": [HINT],
    }

    def fake_run(command, **kwargs):  # the subprocess's report, as `parity run` writes it
        (tmp_path / "t").mkdir(exist_ok=True)
        (tmp_path / "t" / "report.json").write_text(json.dumps(doc))
        return type("Proc", (), {"stdout": "line", "stderr": ""})()

    monkeypatch.setattr(suite.subprocess, "run", fake_run)
    row = suite.run_one(case, "float32", tmp_path / "t", "both")
    assert not row["ok"]  # fails at a block, pinned at decoding/vae_input
    (testcase,) = suite.junit_testcases([row], [])
    assert testcase.find("failure").get("message") == (
        "first divergence: denoising/hidden_states step 0 block transformer_blocks.1 (max abs 0.5 > atol 1e-4); "
        "expected to fail at decoding/vae_input"
    )
    assert "report: " + str(tmp_path / "t" / "report.md") in testcase.find("failure").text


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("parity: error:")]
    assert len(err) == 1, err
    return err[0]


def test_a_bad_junit_path_is_one_line_and_exit_2_before_any_model_work(tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    assert main(["run", "flux-tiny", *out, "--junit", str(tmp_path)]) == 2
    assert f"--junit {tmp_path} is a directory, not a file" in _error_line(capsys)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", "flux-tiny", *out, "--junit", str(blocker / "junit.xml")]) == 2
    assert f"--junit {blocker / 'junit.xml'}: {blocker} is not a directory" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_run_writes_an_error_testcase_when_the_run_errors_with_a_report(tmp_path, capsys):
    model = tmp_path / "not-a-model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"")
    path = tmp_path / "ci" / "junit.xml"  # its directory is created
    assert main(["run", str(model), "--family", "flux", "--out", str(tmp_path / "out"), "--junit", str(path)]) == 2
    assert "no model_index.json" in _error_line(capsys)
    testsuite, (case,) = _read(path)
    assert testsuite.get("errors") == "1" and case.get("classname") == "parity.not-a-model"
    assert "no model_index.json" in case.find("error").get("message")
    assert str(tmp_path / "out" / "report.md") in case.find("error").text
