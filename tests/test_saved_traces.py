"""--save-traces and `parity rejudge` on synthetic traces: the save/load round trip, and a saved run judged
again under its own tolerances and under a tighter case's, without a pipeline."""

import json

import pytest
import torch

from parity import families, saved_traces, session
from parity.cases import Case
from parity.cli import main
from parity.errors import ParityError
from parity.files import created_mode
from parity.report import write
from parity.results import RunReport
from parity.trace import Key, Trace
from parity.vocab import Mode


def _records(trace: Trace) -> list[tuple]:
    return [(r.key, r.stage, r.layout, r.meta, r.value.dtype, r.value.tolist()) for r in trace]


def test_traces_come_back_as_they_were_recorded(tmp_path):
    reference, port = Trace("reference"), Trace("port")
    shared = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    reference.add("input_ids.0", "text_encoding", torch.tensor([[1, 5, 9]]))
    reference.add("attention_mask.0", "text_encoding", torch.tensor([[True, True, False]]))
    reference.add("latents", "latent_preparation", torch.randn(1, 4, 8), layout="packed", height=32, width=32)
    reference.add("timesteps", "timestep_preparation", torch.tensor([1000.0, 750.5], dtype=torch.float64))
    reference.add("hidden_states", "denoising", torch.randn(1, 4, 8).bfloat16(), step=1, block="transformer_blocks.1")
    reference.add("noise_pred", "denoising", shared, step=0)
    reference.add("noise_pred", "denoising", shared * 2, step=0)  # a key recorded twice: the last one counts
    port.extend(reference)  # the same tensors in two traces, and twice in one file below
    port.extend([r for r in reference if r.key.tensor == "noise_pred"])
    contract = {"fields": {"latents": {"type": "Tensor", "shape": [1, 4, 8]}}}  # the port's Req, as observed
    traces = {"reference": reference, "port": port, "isolated": Trace("port")}
    summary = saved_traces.save(traces, tmp_path / "traces", {"port": contract})
    assert saved_traces.contracts(tmp_path / "traces") == {"port": contract}

    loaded = saved_traces.load(tmp_path / "traces")
    assert set(loaded) == {"reference", "port"}  # an empty trace is not written
    assert _records(loaded["reference"]) == _records(reference)
    assert _records(loaded["port"]) == _records(port) and loaded["port"].side == "port"
    assert loaded["reference"].get(Key("noise_pred", 0)).value.tolist() == (shared * 2).tolist()
    assert summary == {"dir": "traces", "traces": ["port", "reference"], "records": 16, "mib": 0.0}
    assert (tmp_path / "traces" / "port.safetensors").stat().st_mode & 0o777 == created_mode()  # not 0600
    index = json.loads((tmp_path / "traces" / "index.json").read_text())
    block = next(r for r in index["records"] if r["block"] == "transformer_blocks.1" and r["trace"] == "reference")
    assert block | {"name": None} == {
        "trace": "reference",
        "side": "reference",
        "name": None,
        "stage": "denoising",
        "tensor": "hidden_states",
        "step": 1,
        "block": "transformer_blocks.1",
        "layout": "canonical",
        "meta": {},
        "dtype": "bfloat16",
        "shape": [1, 4, 8],
        "bytes": 64,
    }


def test_a_report_without_saved_traces_is_refused_with_the_flag_to_use(tmp_path):
    with pytest.raises(ParityError, match="holds no saved traces.*--save-traces"):
        saved_traces.load(tmp_path / "traces")
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "index.json").write_text('{"format_version": 99}')
    with pytest.raises(ParityError, match="not a saved-traces index"):
        saved_traces.load(tmp_path / "traces")


def _saved_run(tmp_path):
    """A run's report directory with its traces, as `parity run --save-traces` leaves it: the port's
    embeddings and DiT output 1e-6 off the reference's (a pass at the default fp32 tolerances)."""
    reference, port = Trace("reference"), Trace("port")
    values = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    for trace, scale in ((reference, 1.0), (port, 1.0 + 1e-6)):
        trace.add("input_ids.0", "text_encoding", torch.arange(8))
        trace.add("prompt_embeds", "text_encoding", values * scale)
        trace.add("noise_pred", "denoising", values * scale, step=0)
    case = Case(name="synthetic", family="flux", fixture="flux_tiny", steps=1)
    full = session.comparison(reference, port, families.get("flux"), session.policy_for(case), case.dtype, Mode.FULL)
    capture = {"block_policy": "no blocks", "block_steps": [], "block_branch": "conditional"}
    report = RunReport(Mode.FULL, case.as_dict(), full, full.verdict, full, family="flux", capture=capture)
    out = tmp_path / "run"
    write(out, report)
    saved_traces.save({"reference": reference, "port": port}, out / saved_traces.DIRNAME)
    return out


def _checks(doc: dict) -> list[tuple]:
    return [(c["stage"], c["tensor"], c["step"], c["passed"], c["rel_l2"]) for c in doc["checks"]]


def test_rejudged_under_the_same_tolerances_it_finds_what_the_run_found(tmp_path, capsys):
    run = _saved_run(tmp_path)
    assert main(["rejudge", str(run)]) == 0
    doc = json.loads((run / "rejudged" / "report.json").read_text())
    assert doc["verdict"] == "pass" and doc["capture"]["rejudged_from"] == str(run)
    assert _checks(doc) == _checks(json.loads((run / "report.json").read_text()))
    assert any("no pipeline ran" in note for note in doc["notes"])
    assert f"report: {run / 'rejudged' / 'report.md'}" in capsys.readouterr().out


def test_rejudged_under_a_tighter_case_it_fails_where_that_case_says(tmp_path, capsys):
    run = _saved_run(tmp_path)
    tight = tmp_path / "tight.toml"
    tight.write_text(
        'family = "flux"\nfixture = "flux_tiny"\nsteps = 8\n[tolerance]\nembeddings = { atol = 0, rtol = 0 }\n'
    )
    assert main(["rejudge", str(run), "--case", str(tight), "--out", str(tmp_path / "again")]) == 1
    doc = json.loads((tmp_path / "again" / "report.json").read_text())
    assert doc["verdict"] == "fail"
    assert doc["first_divergence"] == {"stage": "text_encoding", "tensor": "prompt_embeds", "step": None, "block": None}
    failing = next(c for c in doc["checks"] if not c["passed"])
    assert failing["tolerance_source"] == "case tight embeddings" and failing["atol"] == 0
    assert any("steps 8: ignored" in note for note in doc["notes"])  # the saved run had 1 step
    assert doc["case"]["steps"] == 1 and doc["case"]["tolerance"] == {"embeddings": {"atol": 0, "rtol": 0}}
    assert "first divergence: stage=text_encoding, tensor=prompt_embeds" in capsys.readouterr().out


def test_rejudge_refuses_what_it_cannot_judge_with_one_line(tmp_path, capsys):
    run = _saved_run(tmp_path)
    (run / "traces" / "index.json").unlink()
    assert main(["rejudge", str(run)]) == 2
    assert "holds no saved traces" in capsys.readouterr().err
    doc = json.loads((run / "report.json").read_text())
    (run / "report.json").write_text(json.dumps(doc | {"parallel": {"world_size": 2}}))
    assert main(["rejudge", str(run)]) == 2
    assert "--port-parallel run" in capsys.readouterr().err
    assert main(["rejudge", str(tmp_path / "nothing")]) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="stops at once only on a machine without CUDA")
def test_saving_traces_turns_the_online_comparison_off_and_says_so(tmp_path):
    from parity import cases
    from parity.capture import BlockCapture

    case = cases.resolve("flux-tiny").with_overrides(device="cuda")  # stops before any pipeline: no CUDA here
    report = session.run_case(case, tmp_path / "run", capture=BlockCapture.parse("all"), save_traces=True)
    assert report.verdict.outcome == "error"
    assert any(n.startswith("--save-traces: compared from whole traces, not online") for n in report.notes)
    assert report.capture["saved_traces"]["records"] == 0  # written even so: what the run recorded, nothing
    assert json.loads((tmp_path / "run" / "traces" / "index.json").read_text())["records"] == []
