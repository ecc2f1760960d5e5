"""`parity sensitivity` end to end on flux-tiny (fp32), one tensor: the real pipelines, probed through the
CLI in a fresh process, then the same call again, answered from the kept table."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.pipeline


def sensitivity(root):
    return subprocess.run(
        [sys.executable, "-m", "parity", "sensitivity", "flux-tiny", "--tensors", "noise_pred", "--out", str(root)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_perturbed_dit_output_is_detected_and_localized_and_the_table_is_kept(tmp_path):
    first = sensitivity(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    report = tmp_path / "flux-tiny-float32" / "report.json"
    doc = json.loads(report.read_text())
    section = doc["sensitivity"]
    assert section["unperturbed"]["verdict"] == "pass"
    [row] = section["rows"]
    assert (row["stage"], row["tensor"], row["step"], row["block"]) == ("denoising", "noise_pred", 0, None)
    assert row["finding"] == "detected" and row["smallest_detected"] <= 0.1
    assert row["localized"] and row["first_new_failure"] == "denoising/noise_pred step 0"
    assert row["fed_to_port"] and row["port_runs"] == len(row["probes"])  # the scheduler step consumes it
    missed = [p["eps"] for p in row["probes"] if not p["detected"]]
    assert missed and max(missed) < row["smallest_detected"]  # a size it does not see was found too
    assert section["summary"].startswith("fp32: blind below ")
    assert "sensitivity [1/1] denoising/noise_pred step 0: eps 0.1" in first.stderr  # progress per probe
    assert (tmp_path / "flux-tiny-float32" / "report.md").read_text().count("| denoising | noise_pred | 0 |") == 1

    written = report.read_bytes()
    again = sensitivity(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "kept table, no pipeline ran" in again.stdout
    assert section["summary"] in again.stdout
    assert "running" not in again.stderr and "sensitivity [" not in again.stderr  # no run, no probe
    assert report.read_bytes() == written
