"""The online comparison on real pipelines: with every block of every step captured, the full run is
compared step by step as both sides go (parity.online), and must give exactly the checks of the
whole traces, and the same first divergence for a fault."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity import cases
from parity.capture import BlockCapture
from parity.session import run_case

pytestmark = pytest.mark.pipeline
PLUGINS = Path(__file__).parent / "plugins"


def rows(out: Path) -> tuple[dict, list[tuple]]:
    doc = json.loads((out / "report.json").read_text())
    found = [
        (c["stage"], c["tensor"], c["step"], c["block"], c["passed"], c.get("max_abs"), c.get("rel_l2"))
        for c in doc["checks"]
    ]
    return doc, found


@pytest.mark.parametrize(("name", "dtype"), [("flux-tiny", "bfloat16"), ("flux-tiny-cfg", "float32")])
def test_online_checks_equal_the_whole_traces_checks(tmp_path, name, dtype):
    case = dataclasses.replace(cases.resolve(name), dtype=dtype)
    found = {}
    for online in (False, True):
        out = tmp_path / str(online)
        run_case(case, out, capture=BlockCapture.parse("all"), compare_online=online)
        found[online] = rows(out)
    (whole_doc, whole), (online_doc, online) = found[False], found[True]
    assert online == whole
    assert any(c[3] is not None for c in online) and online_doc["verdict"] == whole_doc["verdict"]
    assert "online" not in whole_doc["capture"]
    steps = online_doc["case"]["steps"]
    assert online_doc["capture"]["online"]["steps_compared"] == steps
    # The records held at once: about two steps of each side, far below the whole traces' blocks.
    whole_blocks = sum(side["blocks"] for side in whole_doc["trace_bytes"].values()) / 2**20
    assert 0 < online_doc["capture"]["online"]["records_peak_mib"] < whole_blocks
    assert {"reference", "port", "online"} <= set(online_doc["timings_s"])


def test_a_fault_is_localized_the_same_when_compared_online(tmp_path):
    out = tmp_path / "report"
    plugin = str(PLUGINS / "fault_block1_late_steps.py")
    command = [sys.executable, "-m", "parity", "run", "flux-tiny", "--out", str(out), "--block-steps", "all"]
    proc = subprocess.run([*command, "--plugin", plugin], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    doc = json.loads((out / "report.json").read_text())
    assert doc["capture"]["online"]["steps_compared"] == 4
    where = {"stage": "denoising", "tensor": "hidden_states", "step": 2, "block": "transformer_blocks.1"}
    assert doc["first_divergence"] == where
