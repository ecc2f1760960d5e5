import json
import math

import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from parity import files, report, stages
from parity.align import Pair
from parity.compare import compare
from parity.results import Comparison, RunReport
from parity.tolerance import Policy
from parity.trace import Key
from parity.vocab import Mode


def _checks():
    ok = torch.ones(3)
    pairs = [
        Pair(Key("prompt_embeds"), stages.TEXT_ENCODING, ok, ok),
        Pair(Key("noise_pred", step=0), stages.DENOISING, ok, ok * 2),
    ]
    return compare(pairs, Policy("float32"))


def test_report_files_are_valid_and_agree(tmp_path):
    main = Comparison.judge(Mode.FULL, tuple(_checks()))
    doc = report.write(tmp_path, RunReport(Mode.FULL, {"name": "t"}, main, main.verdict, main))
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
    assert files.json_safe({"a": [math.nan, math.inf, -math.inf, 1.5]}) == {"a": [None, "inf", "-inf", 1.5]}


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.json"
    files.write_atomic(target, "old")

    with pytest.raises(TypeError):
        files.write_atomic(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(st.text(), json_values, max_size=4), st.lists(st.dictionaries(st.text(), json_values), max_size=4)
)
def test_report_json_is_the_document_with_one_line_per_check(head, rows):
    doc = {**{k: v for k, v in head.items() if k != "checks"}, "checks": rows}
    text = report.to_json(doc)
    assert json.loads(text) == doc
    lines = text.splitlines()
    start = lines.index('  "checks": [') if rows else None
    if start is not None:
        assert [json.loads(line.strip().rstrip(",")) for line in lines[start + 1 : start + 1 + len(rows)]] == rows


def test_report_md_leads_with_parameters_and_stages_and_shows_rel_l2_and_one_minus_cosine(tmp_path):
    ref = torch.ones(4, 8)
    close = ref + 1e-6
    pairs = [
        Pair(Key("prompt_embeds"), stages.TEXT_ENCODING, ref, close),
        Pair(Key("noise_pred", 0), stages.DENOISING, ref, ref * 1.5),
    ]
    main = Comparison.judge(Mode.FULL, tuple(compare(pairs, Policy("float32"))))
    case = {"name": "t", "fixture": "flux_tiny", "seed": 3, "steps": 2, "dtype": "float32"}
    report.write(tmp_path, RunReport(Mode.FULL, case, main, main.verdict, main))
    md = (tmp_path / "report.md").read_text()
    assert "Run: fixture `flux_tiny` · seed `3` · steps `2` · dtype `float32`" in md
    assert "| text_encoding | 1 | 0 |" in md and "| denoising | 1 | 1 | 0.5 | noise_pred 0 |" in md
    assert md.index("| stage | checks |") < md.index("| | stage | tensor |")  # the summary first
    assert "| rel L2 | 1 − cos |" in md and "0.00e+00" in md  # 1 - cos of a scaled copy is 0, not "1"
