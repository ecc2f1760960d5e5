"""`parity.load_report` and `parity compare A B` on report directories written here (report.json
through parity.report's own writer), never by running a pipeline."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parity
from parity import files, report, reports, stages
from parity.cli import main
from parity.results import SCHEMA_VERSION

TOL = "atol=0.0001 rtol=1e-05 rel_l2<=5e-05"


def check(stage, tensor, step=None, block=None, passed=True, rel_l2=1e-7, max_abs=1e-6, **fields):
    """A check row as parity.compare.Check.row writes it (every field, metrics included)."""
    row = {
        "stage": stage,
        "tensor": tensor,
        "step": step,
        "block": block,
        "passed": passed,
        "status": "ok" if passed else "mismatch",
        "tolerance": TOL,
        "atol": 1e-4,
        "rtol": 1e-5,
        "max_rel_l2": 5e-5,
        "tolerance_source": "default float32/activations",
        "min_atol": max_abs,
        "message": "" if passed else f"rel_l2={rel_l2} exceeds 5e-05; rel_l2<={rel_l2} would have passed",
        "role": None if passed else "cause",
        "shape_match": True,
        "dtype_match": True,
        "reference_shape": [1, 16, 8, 8],
        "port_shape": [1, 16, 8, 8],
        "reference_dtype": "float32",
        "port_dtype": "float32",
        "max_abs": max_abs,
        "mean_abs": max_abs / 4 if isinstance(max_abs, float) else max_abs,
        "rel_l2": rel_l2,
        "cosine": 1.0,
        "sqnr_db": 140.0 if rel_l2 else math.inf,
        "reference_nonfinite": 0,
        "port_nonfinite": 0,
        "evidence": {},
    }
    return row | fields


def baseline():
    """A clean two-step run, in execution order."""
    d = stages.DENOISING
    return [
        check(stages.TEXT_ENCODING, "input_ids.0", rel_l2=0.0, max_abs=0.0, tolerance="exact"),
        check(stages.TEXT_ENCODING, "prompt_embeds", rel_l2=2e-6, max_abs=1e-5),
        check(stages.LATENT_PREPARATION, "latents", rel_l2=0.0, max_abs=0.0),
        check(stages.TIMESTEP_PREPARATION, "timesteps", rel_l2=0.0, max_abs=0.0),
        *(
            row
            for step in (0, 1)
            for row in (
                check(d, "dit_input", step),
                check(d, "hidden_states", step, "transformer_blocks.0"),
                check(d, "hidden_states", step, "transformer_blocks.1"),
                check(d, "noise_pred", step, rel_l2=3e-7),
                check(d, "latents", step),
            )
        ),
        check(stages.DECODING, "vae_input"),
        check(stages.DECODING, "frames", rel_l2=5e-7, max_abs=3e-6),
    ]


def document(checks, **case):
    failed = [c for c in checks if not c["passed"]]
    first = {k: failed[0][k] for k in reports.KEY} if failed else None
    return {
        "schema_version": SCHEMA_VERSION,
        "verdict": "fail" if failed else "pass",
        "first_divergence": first,
        "error": None,
        "summary": {"checks": len(checks), "passed": len(checks) - len(failed), "failed": len(failed)},
        "mode": "full",
        "case": {"name": "flux-tiny", "dtype": "float32", "device": "cpu", "port_ops": "auto", "steps": 2} | case,
        "family": "flux",
        "versions": {"torch": "2.14.1", "sglang": "0.5.23"},
        "port_ops": {"mode": "native" if case.get("device", "cpu") == "cpu" else "kernels"},
        "capture": {"block_policy": "default"},
        "causes": [first] if first else [],
        "checks": checks,
    }


def write(directory: Path, doc: dict) -> Path:
    """A report directory holding `doc` as parity writes report.json (NaN null, infinities "inf")."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(report.to_json(files.json_safe(doc)))
    return directory


def replace(checks, tensor, step=None, block=None, **fields):
    """The checks with one of them changed (found by tensor, step and block)."""
    out = []
    for row in checks:
        hit = (row["tensor"], row["step"], row["block"]) == (tensor, step, block)
        out.append(check(row["stage"], tensor, step, block, **fields) if hit else row)
    return out


def run_compare(capsys, *argv):
    code = main(["compare", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stage_lines(out: str, stage: str) -> list[str]:
    """The lines printed under `stage:` up to the next stage or the conclusion."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{stage}: "))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        body.append(line)
    return body


# --- load_report ----------------------------------------------------------------------------------------


def test_load_report_types_the_columns_and_keeps_the_run_fields(tmp_path):
    checks = baseline()
    checks[-1] = check(stages.DECODING, "frames", passed=False, rel_l2=None, max_abs=math.inf, min_atol=math.inf)
    write(tmp_path / "a", document(checks))
    frame = parity.load_report(tmp_path / "a")
    assert len(frame) == len(checks) and list(frame.columns[:6]) == list(reports.REQUIRED)
    assert str(frame["step"].dtype) == "Int64" and frame["step"].isna().sum() == 6
    assert frame.loc[frame.tensor == "noise_pred", "step"].tolist() == [0, 1]
    assert frame["block"].iloc[0] is None and frame["role"].iloc[0] is None  # None, not NaN or "None"
    assert frame["passed"].dtype == bool and str(frame["shape_match"].dtype) == "boolean"
    assert str(frame["reference_nonfinite"].dtype) == "Int64"
    frames = frame.iloc[-1]
    assert frames["max_abs"] == math.inf and frames["min_atol"] == math.inf and math.isnan(frames["rel_l2"])
    assert frame["sqnr_db"].iloc[0] == math.inf and frame["sqnr_db"].dtype == "float64"  # "inf" read back
    assert frame.attrs["verdict"] == "fail" and frame.attrs["case"]["dtype"] == "float32"
    assert frame.attrs["first_divergence"] == {"stage": "decoding", "tensor": "frames", "step": None, "block": None}
    assert frame.attrs["path"] == str(tmp_path / "a" / "report.json") and "checks" not in frame.attrs
    assert parity.load_report(tmp_path / "a" / "report.json").equals(frame)  # the file itself too
    worst = frame[frame.block.notna()].groupby("block")["rel_l2"].max()  # what the README shows
    assert worst.to_dict() == {"transformer_blocks.0": 1e-7, "transformer_blocks.1": 1e-7}


def test_load_report_of_a_report_written_by_parity(tmp_path):
    """The real writer (parity.report.write of a RunReport judged from tensors) reads back whole."""
    import torch

    from parity.align import Pair
    from parity.compare import compare
    from parity.results import Comparison, RunReport
    from parity.tolerance import Policy
    from parity.trace import Key
    from parity.vocab import Mode

    ok = torch.ones(3)
    pairs = [
        Pair(Key("prompt_embeds"), stages.TEXT_ENCODING, ok, ok),
        Pair(Key("noise_pred", step=0), stages.DENOISING, ok, ok * 2),
        Pair(Key("hidden_states", step=0, block="transformer_blocks.0"), stages.DENOISING, ok, None),
    ]
    judged = Comparison.judge(Mode.FULL, tuple(compare(pairs, Policy("float32"))))
    doc = report.write(
        tmp_path, RunReport(Mode.FULL, {"name": "t", "dtype": "float32"}, judged, judged.verdict, judged)
    )
    frame = reports.load_report(tmp_path)
    assert list(frame["tensor"]) == ["prompt_embeds", "noise_pred", "hidden_states"]
    assert frame["sqnr_db"].iloc[0] == math.inf and frame["passed"].tolist() == [True, False, False]
    assert frame["status"].tolist() == ["ok", "mismatch", "missing_port"]
    assert math.isnan(frame["rel_l2"].iloc[2]) and frame["block"].tolist() == [None, None, "transformer_blocks.0"]
    assert frame.attrs["verdict"] == doc["verdict"] == "fail"
    assert reports.compare(tmp_path, tmp_path).changes == ()


def test_the_schema_version_written_is_one_load_report_reads():
    assert SCHEMA_VERSION in reports.SCHEMA_VERSIONS


def test_sections_of_isolated_and_parallel_runs(tmp_path):
    doc = document(baseline())
    side = [check(stages.DENOISING, "noise_pred", 0, passed=False, rel_l2=0.1)]
    doc["parallel"] = {"world_size": 2, "vs_one_rank": {"verdict": "fail", "checks": side}}
    doc["isolated"] = {"verdict": "pass", "components": [], "checks": "see checks"}  # --mode isolated
    write(tmp_path / "r", doc)
    ranks = reports.load_report(tmp_path / "r", section="parallel.vs_one_rank")
    assert ranks["passed"].tolist() == [False]
    assert ranks.attrs["parallel"] == {"world_size": 2, "vs_one_rank": {"verdict": "fail"}}  # no check lists
    assert len(reports.load_report(tmp_path / "r", section="isolated")) == len(baseline())
    with pytest.raises(parity_error(), match="has no parallel.rank_agreement section"):
        reports.load_report(tmp_path / "r", section="parallel.rank_agreement")


def parity_error():
    from parity.errors import ParityError

    return ParityError


def test_importing_parity_and_reading_reports_imports_no_torch(tmp_path):
    write(tmp_path / "a", document(baseline()))
    code = (
        "import sys, parity\n"
        "assert 'pandas' not in sys.modules and 'torch' not in sys.modules, 'import parity is not cheap'\n"
        f"frame = parity.load_report({str(tmp_path / 'a')!r})\n"
        f"assert parity.compare_reports(frame, {str(tmp_path / 'a')!r}).exit_code == 0\n"
        "assert parity.cases.resolve('flux-tiny').with_overrides(dtype='bfloat16').dtype == 'bfloat16'\n"
        "assert 'torch' not in sys.modules and 'sglang' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    from parity.session import run_case  # torch: imported only when asked for

    assert parity.run_case is run_case and "run_case" in dir(parity)


# --- parity compare -------------------------------------------------------------------------------------


def test_the_same_report_twice_changes_nothing(tmp_path, capsys):
    a = write(tmp_path / "a", document(baseline()))
    code, out, err = run_compare(capsys, a, a)
    assert code == 0 and err == ""
    assert f"{len(baseline())} checks in both reports, 0 changed" in out
    assert "runs differ in: nothing recorded" in out
    assert out.rstrip().endswith("B has no failure that A did not")
    comparison = reports.compare(a, a)
    assert comparison.changes == () and comparison.new_failures == () and comparison.differences == {}


def test_a_new_failure_exits_1_and_comes_first_in_its_stage(tmp_path, capsys):
    a = write(tmp_path / "a", document(baseline()))
    checks = replace(baseline(), "noise_pred", 0, rel_l2=3e-6)  # earlier in the step, moved 10x, passing
    checks = replace(checks, "hidden_states", 1, "transformer_blocks.1", passed=False, rel_l2=0.01, max_abs=0.025)
    checks = replace(checks, "prompt_embeds", rel_l2=2e-6, max_abs=1e-5, status="referee_equivalent")
    b = write(tmp_path / "b", document(checks))
    code, out, err = run_compare(capsys, a, b)
    assert code == 1 and err == ""
    assert "B: " + str(b) + ": FAIL (15/16 checks passed); first divergence: denoising/hidden_states step 1" in out
    lines = stage_lines(out, "denoising")
    assert lines[0].split()[:8] == [
        "NEW",
        "FAILURE",
        "hidden_states",
        "step",
        "1",
        "block",
        "transformer_blocks.1",
        "ok",
    ]
    assert "rel_l2 1e-07 -> 0.01 (x1e+05)" in lines[0] and "max_abs 1e-06 -> 0.025 (x2.5e+04)" in lines[0]
    assert "ok -> mismatch (cause)" in lines[0]  # B's role of the failure
    assert lines[1].strip() == "rel_l2=0.01 exceeds 5e-05; rel_l2<=0.01 would have passed"  # B's message
    assert lines[2].split()[:4] == ["moved", "noise_pred", "step", "0"] and "(x10)" in lines[2]
    assert stage_lines(out, "text_encoding")[0].split()[:4] == ["status", "prompt_embeds", "ok", "->"]
    assert "B has a failure that A did not: 1 failing check(s) that A passes or lacks" in out
    comparison = reports.compare(a, b)
    assert [c.label() for c in comparison.new_failures] == ["hidden_states step 1 block transformer_blocks.1"]
    assert list(comparison.by_stage) == [stages.TEXT_ENCODING, stages.DENOISING]  # execution order
    assert reports.compare(b, a).exit_code == 0  # the fix: nothing new fails
    assert [c.kind for c in reports.compare(b, a).changes if c.tensor == "hidden_states"] == [reports.FIXED]


def test_an_error_grown_10x_that_still_passes_is_listed_and_exits_0(tmp_path, capsys):
    a = write(tmp_path / "a", document(baseline()))
    b = write(tmp_path / "b", document(replace(baseline(), "latents", 1, rel_l2=1e-6, max_abs=1e-6)))
    code, out, _ = run_compare(capsys, a, b)
    assert code == 0
    assert stage_lines(out, "denoising") == [
        "  moved  latents step 1  ok -> ok  rel_l2 1e-07 -> 1e-06 (x10)  max_abs 1e-06 -> 1e-06"
    ]
    code, out, _ = run_compare(capsys, a, b, "--factor", "20")
    assert code == 0 and "0 changed" in out and "denoising:" not in out
    (change,) = reports.compare(a, b).changes
    assert change.kind == reports.MOVED and change.rel_l2_ratio == pytest.approx(10) and change.max_abs_ratio == 1


def test_checks_only_on_one_side(tmp_path, capsys):
    a = write(tmp_path / "a", document(baseline()))
    extra = check(stages.DENOISING, "noise_pred_uncond", 0)
    dropped = [c for c in baseline() if c["tensor"] != "vae_input"]
    b = write(tmp_path / "b", document([*dropped[:9], extra, *dropped[9:]]))
    code, out, _ = run_compare(capsys, a, b)
    assert code == 0 and "only in A: 1; only in B: 1" in out
    assert stage_lines(out, "denoising")[0].split()[:6] == ["only", "in", "B", "noise_pred_uncond", "step", "0"]
    assert "noise_pred_uncond step 0  – -> ok  rel_l2 – -> 1e-07  max_abs – -> 1e-06" in out
    assert stage_lines(out, "decoding") == ["  only in A  vae_input  ok -> –  rel_l2 1e-07 -> –  max_abs 1e-06 -> –"]
    failing = check(stages.DENOISING, "noise_pred_uncond", 0, passed=False, rel_l2=0.5)
    c = write(tmp_path / "c", document([*dropped[:9], failing, *dropped[9:]]))
    assert run_compare(capsys, a, c)[0] == 1  # a failure A did not have: A lacks the check
    (new,) = reports.compare(a, c).new_failures
    assert new.kind == reports.ONLY_B and new.passed_a is None


def test_infinities_and_nulls_compare_and_print(tmp_path, capsys):
    nonfinite = {"passed": False, "status": "nonfinite", "max_abs": math.inf, "rel_l2": None, "min_atol": math.inf}
    a = write(tmp_path / "a", document(replace(baseline(), "frames", **nonfinite)))
    b = write(tmp_path / "b", document(replace(baseline(), "frames", **nonfinite | {"rel_l2": 0.3})))
    c = write(tmp_path / "c", document(baseline()))
    code, out, _ = run_compare(capsys, a, b)
    assert code == 0 and "0 changed" in out  # inf == inf; a NaN on one side is no ratio
    code, out, _ = run_compare(capsys, a, c)
    assert code == 0
    (line,) = [line for line in stage_lines(out, "decoding") if "frames" in line]
    assert (
        line.split()[:5] == ["fixed", "frames", "nonfinite", "->", "ok"] and "max_abs inf -> 3e-06 (from inf)" in line
    )
    code, out, _ = run_compare(capsys, c, a, "--json")
    doc = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in --json output"))
    assert code == doc["exit_code"] == 1
    (row,) = doc["stages"]["decoding"]
    assert row["max_abs_b"] == "inf" and row["max_abs_ratio"] == "inf" and row["rel_l2_b"] is None
    assert row["rel_l2_ratio"] is None and row["kind"] == "new_failure" and row["status_b"] == "nonfinite"
    assert row["role_b"] == "cause" and row["passed_a"] is True and row["passed_b"] is False
    assert doc["new_failures"] == [{"stage": "decoding", "tensor": "frames", "step": None, "block": None}]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(0.0, 0.0, 1.0), (0.0, 1e-9, math.inf), (1e-9, 0.0, 0.0), (math.inf, math.inf, 1.0), (2.0, math.inf, math.inf)],
)
def test_ratio_handles_zero_and_infinity(a, b, expected):
    assert reports.ratio(a, b) == expected
    assert reports.beyond(reports.ratio(a, b), 2.0) is (expected != 1.0)
    assert math.isnan(reports.ratio(math.nan, b)) and not reports.beyond(math.nan, 2.0)


def test_a_cpu_vs_gpu_comparison_says_what_differs(tmp_path, capsys):
    a = write(tmp_path / "cpu", document(baseline()))
    gpu = document(replace(baseline(), "prompt_embeds", rel_l2=1e-3, max_abs=0.01), device="cuda")
    gpu["versions"]["sglang"] = "0.5.24"
    b = write(tmp_path / "gpu", gpu)
    code, out, _ = run_compare(capsys, a, b)
    assert code == 0
    assert (
        "runs differ in: case.device cpu -> cuda; port_ops.mode native -> kernels; versions.sglang 0.5.23 -> 0.5.24"
        in out
    )
    comparison = reports.compare(a, b)
    assert comparison.same_case and comparison.differences["case.device"] == ("cpu", "cuda")
    other = write(tmp_path / "sd3", document(baseline(), name="sd3-tiny"))
    assert not reports.compare(a, other).same_case
    assert (
        "different cases: checks are paired by stage, tensor, step and block only" in run_compare(capsys, a, other)[1]
    )


def test_the_listing_stops_at_the_limit(tmp_path, capsys):
    a = write(tmp_path / "a", document(baseline()))
    moved = baseline()
    for step in (0, 1):
        for tensor in ("dit_input", "noise_pred", "latents"):
            moved = replace(moved, tensor, step, rel_l2=1e-3)
    b = write(tmp_path / "b", document(moved))
    _, out, _ = run_compare(capsys, a, b, "--limit", "4")
    lines = stage_lines(out, "denoising")
    assert "denoising: 6 changed" in out and len(lines) == 5 and lines[-1] == "  … and 2 more"
    # the largest moves first: 1e-7 -> 1e-3 (dit_input, latents) before noise_pred's 3e-7 -> 1e-3
    assert all("(x1e+04)" in line for line in lines[:4]) and "noise_pred" not in out
    _, out, _ = run_compare(capsys, a, b, "--limit", "0")
    assert len(stage_lines(out, "denoising")) == 6


def test_b_that_could_not_run_is_a_new_failure(tmp_path, capsys):
    a = write(tmp_path / "a", document(baseline()))
    broken = document([]) | {"verdict": "error", "error": "the port could not run: boom"}
    b = write(tmp_path / "b", broken)
    code, out, _ = run_compare(capsys, a, b)
    assert code == 1 and "B's verdict is error where A's is not" in out
    assert "B: " + str(b) + ": ERROR (0/0 checks passed); error: the port could not run: boom" in out
    assert f"only in A: {len(baseline())}" in out


def _bad_inputs(tmp_path):
    good = write(tmp_path / "good", document(baseline()))
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "report.json").write_text("{not json")
    other = write(tmp_path / "other", {"results": []})
    future = write(tmp_path / "future", document(baseline()) | {"schema_version": 99})
    rowless = write(tmp_path / "rowless", document([]) | {"checks": [{"stage": "decoding", "tensor": "frames"}]})
    badnum = write(tmp_path / "badnum", document(replace(baseline(), "frames", max_abs="big", min_atol=1e-6)))
    return [
        ([good, tmp_path / "missing"], f"{tmp_path / 'missing'}: no such report directory or report.json"),
        ([tmp_path / "empty", good], "holds no report.json: not a parity report directory"),
        ([good, tmp_path / "junk"], "report.json is not valid JSON (line 1: Expecting property name"),
        ([other, good], "is not a parity report (no schema_version)"),
        ([good, future], "has schema_version 99, which this parity does not read (it reads 1)"),
        ([good, rowless], "checks[0] is not a check row (missing step, block, passed, status)"),
        ([good, badnum], "checks[15].max_abs is 'big', not a number"),
        ([good, good, "--factor", "1"], "--factor must be a number > 1, got 1.0"),
        ([good, good, "--factor", "nan"], "--factor must be a number > 1"),
    ]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    for argv, expected in _bad_inputs(tmp_path):
        code, out, err = run_compare(capsys, *argv)
        assert code == 2 and out == "", argv
        assert err.count("\n") == 1 and err.startswith("parity: error: ") and expected in err, (argv, err)


# --- properties -----------------------------------------------------------------------------------------

numbers = st.none() | st.sampled_from([0.0, math.inf]) | st.floats(1e-12, 1e3)
rows = st.lists(
    st.builds(
        check,
        st.sampled_from(stages.ORDER),
        st.sampled_from(["latents", "noise_pred", "hidden_states"]),
        st.none() | st.integers(0, 3),
        st.none() | st.sampled_from(["transformer_blocks.0", "embedders"]),
        st.booleans(),
        numbers,
        numbers,
    ),
    max_size=12,
    unique_by=lambda row: (row["stage"], row["tensor"], row["step"], row["block"]),
)


def frame(checks) -> pd.DataFrame:
    """The checks through report.json's text and back, as `parity compare` reads them."""
    return reports.checks_frame(json.loads(report.to_json(files.json_safe(document(checks)))))


@settings(max_examples=60, deadline=None)
@given(rows)
def test_a_report_against_itself_never_changes(checks):
    comparison = reports.compare(frame(checks), frame(checks))
    assert comparison.changes == () and comparison.exit_code == 0 and comparison.paired == len(checks)


@settings(max_examples=60, deadline=None)
@given(rows, rows)
def test_a_new_failure_one_way_is_a_fix_or_a_missing_check_the_other(checks_a, checks_b):
    forward = reports.compare(frame(checks_a), frame(checks_b))
    backward = reports.compare(frame(checks_b), frame(checks_a))
    kinds = {(c.stage, c.tensor, c.step, c.block): c.kind for c in backward.changes}
    for change in forward.new_failures:
        assert kinds[(change.stage, change.tensor, change.step, change.block)] in (reports.FIXED, reports.ONLY_A)
    assert forward.paired == backward.paired
    order = [stages.ORDER.index(stage) for stage in forward.by_stage]
    assert order == sorted(order)  # stages in execution order


def test_a_table_read_from_checks_csv_pairs_like_report_json(tmp_path):
    """checks.csv has NaN, not None, where a check is not a step's or a block's."""
    a = write(tmp_path / "a", document(baseline()))
    pd.DataFrame(baseline()).to_csv(tmp_path / "checks.csv", index=False)
    table = pd.read_csv(tmp_path / "checks.csv")
    comparison = reports.compare(table, a)
    assert comparison.changes == () and comparison.paired == len(baseline())
