"""flux-tiny run once with --save-traces: the console's step lines, the saved traces, and `parity rejudge`
judging them again (as the run did, then under a tighter case) in a process where no pipeline library loads."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline
TIGHT = Path(__file__).parent / "cases" / "flux-tiny-tight-blocks.toml"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "report"
    command = [sys.executable, "-m", "parity", "run", "flux-tiny", "--save-traces", "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return out, proc


def test_each_side_shows_each_step_once_on_a_log(saved):
    _, proc = saved
    lines = proc.stderr.splitlines()
    for label in ("Diffusers (reference)", "SGLang (port)"):
        steps = [line.split("] ", 1)[1] for line in lines if f"] {label} step " in line]
        assert steps == [f"{label} step {k}/4" for k in range(1, 5)], proc.stderr
    assert "\r" not in proc.stderr  # not a terminal: whole lines only


def test_the_traces_are_saved_with_an_index_of_every_record(saved):
    out, _ = saved
    doc = json.loads((out / "report.json").read_text())
    assert doc["capture"]["saved_traces"]["traces"] == ["port", "reference"]
    index = json.loads((out / "traces" / "index.json").read_text())
    keys = {(r["side"], r["stage"], r["tensor"], r["step"], r["block"]) for r in index["records"]}
    for check in doc["checks"]:
        # the frames' similarity and noise are judged from the frames, the contract from the port's Req
        if check["tensor"] not in ("frames_similarity", "frames_noise") and check["stage"] != "contract":
            where = (check["stage"], check["tensor"], check["step"], check["block"])
            assert {("reference", *where), ("port", *where)} <= keys, where
    assert index["contracts"]["port"]  # the Req the contract checks judge, saved beside the records


def test_rejudge_finds_the_runs_verdict_then_a_tighter_cases_failure_without_a_pipeline(saved, tmp_path):
    out, _ = saved
    script = (
        "import sys\n"
        "from parity.cli import main\n"
        f"codes = [main(['rejudge', {str(out)!r}]), main(['rejudge', {str(out)!r}, '--case', {str(TIGHT)!r},"
        f" '--out', {str(tmp_path / 'tight')!r}])]\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'sglang', 'transformers'})\n"
        "print('CODES', codes, 'LOADED', loaded)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "CODES [0, 1] LOADED []" in proc.stdout, proc.stdout + proc.stderr[-3000:]

    def checks(doc):
        return [(c["stage"], c["tensor"], c["step"], c["block"], c["passed"], c.get("rel_l2")) for c in doc["checks"]]

    run, same = (json.loads((d / "report.json").read_text()) for d in (out, out / "rejudged"))
    assert same["verdict"] == "pass" and checks(same) == checks(run)
    tight = json.loads((tmp_path / "tight" / "report.json").read_text())
    assert tight["verdict"] == "fail"
    first = tight["first_divergence"]
    assert (first["stage"], first["step"], first["block"]) == ("denoising", 0, "embedders")
    assert tight["case"]["tolerance"] == {"block_output": {"atol": 1e-7, "rtol": 0, "rel_l2": 1e-7}}
    assert (tmp_path / "tight" / "port.png").is_file()  # report.md's frames, copied beside it
