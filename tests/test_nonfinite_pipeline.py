"""End to end on flux-tiny: NaN in the port's DiT output from step 1 is a failure, and says so.

A fresh process through the CLI, as in tests/test_pipeline_parity.py (the plugin patches SGLang).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline
PLUGIN = Path(__file__).parent / "plugins" / "fault_nan_step1.py"


def test_nan_in_the_port_from_step_1_fails_there_with_counts_and_a_hint(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "parity", "run", "flux-tiny", "--out", str(out), "--plugin", str(PLUGIN)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    doc = json.loads((out / "report.json").read_text())
    assert doc["verdict"] == "fail"
    assert doc["first_divergence"] == {"stage": "denoising", "tensor": "noise_pred", "step": 1, "block": None}
    rows = {(c["tensor"], c["step"], c["block"]): c for c in doc["checks"]}
    first = rows[("noise_pred", 1, None)]
    assert first["status"] == "nonfinite" and first["passed"] is False
    # Every channel of one of the 64 tokens is NaN (16 of 1024 elements); the distances on the finite
    # rest say nothing of it.
    assert first["port_nonfinite"] == 16 and first["reference_nonfinite"] == 0
    assert re.match(
        r"the port has 16 NaN/Inf of 1024 elements \(all NaN\) where the reference has none;", first["message"]
    )
    # Step 0 and the blocks of step 1 (captured by the rerun of the first failing step) are finite.
    assert rows[("noise_pred", 0, None)]["passed"]
    assert rows[("hidden_states", 1, "transformer_blocks.1")]["port_nonfinite"] == 0
    [hint] = doc["hints"]
    assert hint["at"] == "denoising/noise_pred step 1"
    assert (
        "NaN/Inf in the port, first at denoising/noise_pred step 1 (the DiT's output): 16 of 1024 elements"
        in hint["symptom"]
    )
    assert "overflow" in hint["likely_cause"]
    line = proc.stdout.splitlines()[0]
    assert "step=1" in line and "the port has 16 NaN/Inf of 1024 elements" in line
    assert any("hint (denoising/noise_pred step 1): NaN/Inf in the port" in x for x in proc.stdout.splitlines())
