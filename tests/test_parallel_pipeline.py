"""The port in 2 CPU ranks (gloo) against the reference and against itself at one rank: each
parallelism fault plugin is found where it acts, and the one-rank comparison blames the parallel
path; a rank that fails ends the run as an error naming it. Each run is a fresh `parity` process
(the plugins reach the rank processes too)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline
PLUGINS = Path(__file__).parent / "plugins"


def parity_run(tmp_path, case, *args, steps="1"):
    """One step is enough for a fault (each shows at step 0); a clean run takes the case's steps
    (Diffusers' Qwen-Image schedule has a NaN timestep at one step)."""
    out = tmp_path / "report"
    steps_flag = ["--steps", steps] if steps else []
    proc = subprocess.run(
        [sys.executable, "-m", "parity", "run", case, "--out", str(out), *steps_flag, *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = out / "report.json"
    return proc, (json.loads(report.read_text()) if report.is_file() else None), out


def where(stage, tensor, step=None, block=None):
    return {"stage": stage, "tensor": tensor, "step": step, "block": block}


# plugin(s), case, degrees, extra flags, where the ranks first differ from the one-rank port
FAULTS = [
    (
        ["fault_sp_rope_not_offset.py"],
        "qwen-image-tiny",
        "ulysses=2",
        [],
        where("denoising", "encoder_hidden_states", 0, "transformer_blocks.0"),
    ),
    (
        ["fault_ulysses_head_order.py"],
        "qwen-image-tiny",
        "ulysses=2",
        [],
        where("denoising", "encoder_hidden_states", 0, "transformer_blocks.0"),
    ),
    (["fault_sp_gather_wrong_dim.py"], "wan-t2v-tiny", "ulysses=2", [], where("denoising", "noise_pred_cond", 0)),
    (
        ["confirm_qwen_image_sp_pad_masked.py", "fault_sp_padding_not_trimmed.py"],
        "qwen-image-tiny",
        "ulysses=2",
        ["--height", "112", "--width", "112"],
        where("decoding", "vae_input"),
    ),
]


@pytest.mark.parametrize(("plugins", "case", "degrees", "flags", "first"), FAULTS, ids=[f[0][-1] for f in FAULTS])
def test_a_parallelism_fault_is_found_where_it_acts_and_blamed_on_the_parallel_path(
    tmp_path, plugins, case, degrees, flags, first
):
    loaded = [arg for p in plugins for arg in ("--plugin", str(PLUGINS / p))]
    proc, doc, _ = parity_run(tmp_path, case, "--port-parallel", degrees, *flags, *loaded)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    section = doc["parallel"]
    assert section["world_size"] == 2 and section["degrees"]["ulysses"] == 2
    assert [r["sp"] for r in section["ranks"]] == [0, 1]
    assert section["vs_one_rank"]["verdict"] == "fail"
    assert section["vs_one_rank"]["first_divergence"] == first
    assert "the parallel path is to blame" in section["conclusion"]
    assert f"port ranks ({degrees}): the 2-rank port diverges from the same port at one rank" in proc.stdout
    assert section["rank_agreement"]["verdict"] == "pass"  # whole tensors still agree: not a collective bug


def test_a_clean_port_in_two_tensor_parallel_ranks_matches_its_one_rank_run_and_really_shards(tmp_path):
    proc, doc, out = parity_run(tmp_path, "qwen-image-tiny", "--port-parallel", "tp=2", steps=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    section = doc["parallel"]
    assert doc["verdict"] == "pass" and section["vs_one_rank"]["verdict"] == "pass"
    assert section["rank_agreement"]["summary"]["checks"] > 10 and section["rank_agreement"]["verdict"] == "pass"
    assert all(rank["sglang"]["tp_size"] == 2 for rank in section["ranks"])
    # TP really splits the DiT: each rank holds less than the one-rank DiT
    assert all(rank["dit_parameters"] < section["one_rank_dit_parameters"] for rank in section["ranks"])
    assert doc["pipelines"]["port"].endswith("qwen_image.QwenImagePipeline")
    assert not list(out.glob(".ranks*")) and not list(out.glob("port-rank*"))  # work files gone


def test_a_rank_that_fails_ends_the_run_as_an_error_naming_it(tmp_path):
    proc, doc, out = parity_run(
        tmp_path,
        "qwen-image-tiny",
        "--port-parallel",
        "ulysses=2",
        "--plugin",
        str(PLUGINS / "fault_raise_in_rank1.py"),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("parity: error: SGLang (port) rank 1 failed: RuntimeError: shard of 25 tokens")
    assert "traceback in port-rank1-traceback.txt" in line
    assert "injected fault in rank 1" in (out / "port-rank1-traceback.txt").read_text()
    assert doc["verdict"] == "error" and doc["pipelines"]["reference"].endswith("QwenImagePipeline")
