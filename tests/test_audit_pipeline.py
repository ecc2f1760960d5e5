"""`parity run --audit fp64` end to end on flux-tiny: a clean port has no flag, and a logic difference that
every float32 tolerance lets through (tests/plugins/fault_qk_norm_eps.py) is flagged where it is."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity import audit

pytestmark = pytest.mark.pipeline
PLUGINS = Path(__file__).parent / "plugins"


def audited(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "report"
    command = [sys.executable, "-m", "parity", "run", "flux-tiny", "--steps", "2", "--audit", "fp64", "-q"]
    proc = subprocess.run([*command, "--out", str(out), *args], capture_output=True, text=True, timeout=600)
    return proc, json.loads((out / "report.json").read_text())


def test_a_clean_port_has_no_flag_and_every_component_is_audited(tmp_path):
    proc, doc = audited(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    found = doc["audit"]
    # embedders (2 inputs), 2 double + 2 single blocks (2 outputs each), the DiT call
    assert found["components"] == 11 and found["flagged"] == []
    assert set(found["largest_by_kind"]) == {"embedders", "block", "dit_call"}
    assert all(
        k["rel_l2"] <= max(audit.FACTOR * k["floor"], audit.FLOAT64_ROUNDING) for k in found["largest_by_kind"].values()
    )
    rows = [c for c in doc["checks"] if c["stage"] == "audit"]
    assert len(rows) == 11 and all(r["passed"] for r in rows)
    assert "float64 audit of step 0: 11 components, none flagged" in proc.stdout


def test_an_eps_slightly_off_passes_every_float32_check_and_the_audit_flags_it(tmp_path):
    proc, doc = audited(tmp_path, "--plugin", str(PLUGINS / "fault_qk_norm_eps.py"))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    run_dtype = [c for c in doc["checks"] if c["stage"] != "audit"]
    assert run_dtype and all(c["passed"] for c in run_dtype)  # what a run without the audit would conclude
    first = doc["first_divergence"]
    assert first == {"stage": "audit", "tensor": first["tensor"], "step": 0, "block": "transformer_blocks.0"}
    flagged = [c for c in doc["checks"] if c["stage"] == "audit" and not c["passed"]]
    assert all(c["rel_l2"] > c["evidence"]["limit"] and c["reference_dtype"] == "float64" for c in flagged)
    assert flagged[0]["rel_l2"] > 10 * flagged[0]["evidence"]["limit"]  # measured: 7.9e-7 against 4.3e-8
    assert "hidden under the float32 tolerance" in flagged[0]["message"]
    assert "embedders" not in " ".join(doc["audit"]["flagged"])  # the DiT's input embedding has no eps
    hint = doc["hints"][0]
    assert "transformer_blocks.0" in hint["symptom"] and "constant slightly off" in hint["likely_cause"]
