import json
import math

import pandas as pd
import pytest
import torch

from parity import report, stages
from parity.align import Pair
from parity.compare import compare
from parity.tolerance import Policy
from parity.trace import Key
from parity.verdict import decide


def _checks():
    ok = torch.ones(3)
    pairs = [
        Pair(Key("prompt_embeds"), stages.TEXT_ENCODING, ok, ok),
        Pair(Key("noise_pred", step=0), stages.DENOISING, ok, ok * 2),
    ]
    return compare(pairs, Policy("float32"))


def test_report_files_are_valid_and_agree(tmp_path):
    checks = _checks()
    doc = report.write(tmp_path, decide(checks), checks, {"case": {"name": "t"}, "versions": {}, "pipelines": {}})
    loaded = json.loads((tmp_path / "report.json").read_text())  # strict: no NaN/Infinity tokens
    assert loaded == doc
    assert loaded["verdict"] == "fail"
    assert loaded["first_divergence"] == {"stage": "denoising", "tensor": "noise_pred", "step": 0, "block": None}
    assert loaded["checks"][0]["sqnr_db"] == "inf" and loaded["checks"][1]["passed"] is False
    table = pd.read_csv(tmp_path / "checks.csv")
    assert list(table["tensor"]) == ["prompt_embeds", "noise_pred"]
    md = (tmp_path / "report.md").read_text()
    assert "**Verdict: FAIL**" in md and "noise_pred" in md and "would have passed" in md


def test_json_safe_replaces_nonfinite():
    assert report._json_safe({"a": [math.nan, math.inf, -math.inf, 1.5]}) == {"a": [None, "inf", "-inf", 1.5]}


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.json"
    report.write_atomic(target, "old")

    with pytest.raises(TypeError):
        report.write_atomic(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind
