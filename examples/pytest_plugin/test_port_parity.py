"""parity's pytest plugin (installed with parity: the `pytest11` entry point `parity`) used from a test file
of one's own: `pytest examples/pytest_plugin/ [--parity-reports DIR]`.

Each case runs in this pytest process (the pipelines are loaded once and reused by the next case). A
`plugins=` entry is imported once and patches for the rest of the session, as `parity run --plugin` does in
its process: fault plugins go last, or in a file of their own run separately.
"""

from pathlib import Path

import pytest

FAULT = Path(__file__).resolve().parents[2] / "tests" / "plugins" / "fault_dit_output.py"


@pytest.mark.parity("flux-tiny", dtype="float32")
def test_flux_port_matches_diffusers(parity_report):
    # Reached only when the case passed; the RunReport is there to look at.
    assert parity_report.summary["failed"] == 0


@pytest.mark.xfail(strict=True, reason="the fault plugin scales the port's DiT output by 1.02")
def test_a_broken_port_is_caught(parity_case):
    parity_case("flux-tiny", dtype="float32", plugins=[str(FAULT)])  # fails: first divergence noise_pred step 0
