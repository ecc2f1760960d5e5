"""Every failure that is not a divergence is a clear exit 2 (130 for Ctrl-C), found before any model
work where it can be, and never leaves a report directory mixed. The slow probes run real `parity`
processes (signals, concurrency and library output need a real process)."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from parity import case_schema
from parity.cli import main

PLUGINS = Path(__file__).parent / "plugins"


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("parity: error:")]


def _case_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "case.toml"
    path.write_text('fixture = "flux_tiny"\nfamily = "flux"\n' + body)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('steps = "four"\n', 'steps must be an integer >= 1, got "four"'),
        ("seed = -1\n", "seed must be an integer >= 0"),
        ("seed = 1.5\n", "seed must be an integer >= 0 and < 9223372036854775808, got 1.5"),
        ("height = 100\n", "height must be an integer >= 16, a multiple of 16, got 100"),
        ('dtype = "float16"\n', 'dtype must be one of float32, bfloat16, got "float16"'),
        ("[tolerance]\nfrmaes = { atol = 1e-3 }\n", "tolerance: unknown key 'frmaes'; known kinds: tokens"),
        ("[tolerance]\nframes = { atol = -1 }\n", "tolerance.frames: atol must be a finite number >= 0, got -1"),
        ('expected = "maybe"\n', 'expected must be one of pass, fail, got "maybe"'),
    ],
)
def test_a_bad_case_file_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, body, message):
    path = _case_file(tmp_path, body)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    [line] = _error_lines(capsys)
    assert line.startswith(f"parity: error: {path}: ") and message in line
    assert not (tmp_path / "out").exists()  # refused before any run started


def test_case_validation_runs_before_torch_or_the_libraries_are_imported(tmp_path):
    path = _case_file(tmp_path, "seed = -1\n")
    code = (
        "import sys; from parity.cli import main; rc = main(['run', sys.argv[1]]);"
        "loaded = [m for m in ('torch', 'diffusers', 'sglang') if m in sys.modules];"
        "print(rc, loaded)"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "2 []", proc.stdout + proc.stderr
    assert "seed must be an integer >= 0" in proc.stderr
    assert time.perf_counter() - t0 < 20  # a second or two: no library import, no pipeline


@pytest.mark.parametrize("how", ["a file", "under a file"])
def test_out_that_cannot_be_a_directory_is_refused_before_any_model_work(tmp_path, capsys, how):
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    out = blocker if how == "a file" else blocker / "report"
    assert main(["run", "flux-tiny", "--out", str(out)]) == 2
    [line] = _error_lines(capsys)
    assert f"--out {out}" in line and ("is a file" in line or "not a directory" in line)
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 directory: the probe needs a plain user")
def test_read_only_out_is_refused_before_any_model_work(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["run", "flux-tiny", "--out", str(locked / "report")]) == 2
    assert "is not writable" in _error_lines(capsys)[0]


def test_a_plugin_that_raises_at_import_is_one_line(tmp_path, capsys):
    plugin = PLUGINS / "fault_raise_at_import.py"
    assert main(["run", "flux-tiny", "--plugin", str(plugin), "--out", str(tmp_path / "out")]) == 2
    [line] = _error_lines(capsys)
    assert "fault_raise_at_import.py failed to import: ImportError: cannot import name" in line


# Case files made of random keys, types and values, run through the real command line. A valid one
# points at a model directory that does not exist, so it ends at the first model work (exit 2) instead
# of running pipelines: every answer is 0, 1 or 2, never a traceback, and a refusal names its key.
_values = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-10, 10), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(-5, 5) | st.text(max_size=5), max_size=3),
)
_keys = st.sampled_from(sorted(set(case_schema.FIELDS) - {"fixture", "model_dir"})) | st.text(min_size=1, max_size=10)
FUZZED = {"count": 0}


def _toml(value) -> str:
    """TOML for the fuzzed values (JSON's strings, unescaped beyond control characters, are TOML strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_keys, _values, min_size=1, max_size=5))
def test_fuzzed_case_files_exit_0_1_or_2_never_a_traceback_and_a_refusal_names_its_key(tmp_path, capsys, data):
    FUZZED["count"] += 1
    missing = tmp_path / "no-such-model"
    body = f"model_dir = {json.dumps(str(missing))}\n" + "".join(
        f"{json.dumps(k, ensure_ascii=False)} = {_toml(v)}\n" for k, v in data.items()
    )
    path = tmp_path / "fuzz.toml"
    path.write_text(body)
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "-q"])
    captured = capsys.readouterr()
    assert code in (0, 1, 2) and "Traceback" not in captured.err + captured.out
    if code == 2:
        [line] = [line for line in captured.err.splitlines() if line.startswith("parity: error:")]
        named = [k for k in data if repr(k) in line or any(f"{k}{end}" in line for end in (" ", ":", "."))]
        # A refusal names its key; a file that is not TOML (a fuzzed string may hold a raw control
        # character) is named with the line and column; a valid case ends at the missing model.
        syntax = f"cannot read case file {path}" in line and "(at line" in line
        event("refused: not TOML" if syntax else "refused by name" if named else "valid: ended at the model")
        assert named or syntax or f"{missing} does not exist" in line or "go together" in line, line


def test_the_fuzz_test_generated_its_case_files():
    assert FUZZED["count"] == 0 or FUZZED["count"] >= 300


# -- real processes ----------------------------------------------------------------------------------


def _parity(*args: str, **kwargs) -> subprocess.Popen:
    # SIGINT at its default, as in a terminal: a process started in the background by a shell
    # without job control (nohup ... &) inherits it ignored, and Python then never raises Ctrl-C.
    return subprocess.Popen(
        [sys.executable, "-m", "parity", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 300) -> str:
    """Read the process's stderr until a line holds `text`; returns what was read."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"never saw {text!r}: {''.join(seen)[-2000:]}")


def _a_previous_report(out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True)
    files = {"report.json": b'{"verdict": "pass", "old": true}\n', "port.png": b"old png"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def _contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _no_staging_left(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]


@pytest.mark.pipeline
# 3 s into the port's phase a Ctrl-C once landed inside a library's import and ended the process with
# SIGSEGV: parity now raises it at a safe point (parity.interrupts).
@pytest.mark.parametrize(
    ("phase", "delay"),
    [("running Diffusers (reference)", 0.5), ("running SGLang (port)", 0.5), ("running SGLang (port)", 3.0)],
)
def test_ctrl_c_is_exit_130_and_leaves_the_previous_report_untouched(tmp_path, phase, delay):
    out = tmp_path / "out"
    before = _a_previous_report(out)
    proc = _parity("flux-tiny", "--steps", "28", "--out", str(out))
    _wait_for(proc, phase)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("parity:")]
    assert lines == ["parity: interrupted; nothing was written (an earlier report is left as it was)"]
    assert "Traceback" not in stderr
    assert _contents(out) == before and _no_staging_left(tmp_path)


@pytest.mark.pipeline
def test_a_second_run_into_the_same_out_is_refused_while_the_first_completes(tmp_path):
    out = tmp_path / "out"
    first = _parity("flux-tiny", "--out", str(out))
    _wait_for(first, "running Diffusers (reference)")
    second = subprocess.run(
        [sys.executable, "-m", "parity", "run", "flux-tiny", "--out", str(out)], capture_output=True, text=True
    )
    assert second.returncode == 2
    assert f"another parity run is writing {out}" in second.stderr
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stdout + stderr[-3000:]
    assert json.loads((out / "report.json").read_text())["verdict"] == "pass"


@pytest.mark.pipeline
def test_an_old_run_is_replaced_whole_and_files_are_readable_by_others(tmp_path):
    out = tmp_path / "out"
    _a_previous_report(out)
    (out / "port-traceback.txt").write_text("from an older run")
    proc = subprocess.run(
        [sys.executable, "-m", "parity", "run", "flux-tiny", "--out", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "checks.csv",
        "libraries.log",
        "port.png",
        "reference.png",
        "report.html",
        "report.json",
        "report.md",
    ]
    assert json.loads((out / "report.json").read_text()).get("old") is None
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {oct(0o666 & ~_umask())}
    assert _no_staging_left(tmp_path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.pipeline
def test_a_port_that_raises_mid_denoising_is_exit_2_one_line_with_the_library_output_in_a_log(tmp_path):
    out = tmp_path / "out"
    plugin = PLUGINS / "fault_raise_mid_denoising.py"
    proc = subprocess.run(
        [sys.executable, "-m", "parity", "run", "flux-tiny", "--plugin", str(plugin), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("parity: error:")]
    assert len(errors) == 1 and "SGLang (port) failed" in errors[0] and "injected fault" in errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr  # the library's traceback is not on the console
    assert "\x1b[" not in proc.stdout  # nor its colours
    doc = json.loads((out / "report.json").read_text())
    assert doc["verdict"] == "error"
    assert doc["pipelines"]["port"] == "sglang.multimodal_gen.runtime.pipelines.flux.FluxPipeline"
    assert "injected fault" in (out / "port-traceback.txt").read_text()
    assert (out / "libraries.log").stat().st_size > 0
    assert "Port: `sglang.multimodal_gen.runtime.pipelines.flux.FluxPipeline`" in (out / "report.md").read_text()
