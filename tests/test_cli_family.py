"""`parity --family [NAME]`: the known families, each with its Diffusers class, SGLang pipeline and cases."""

import pytest

from parity import cases, families
from parity.cli import main


def _exit(argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return exited.value.code


def test_every_family_is_listed_with_both_pipelines_and_its_bundled_cases(capsys):
    assert _exit(["--family"]) == 0  # no command needed, as with --version
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert sorted(lines) == families.known()
    for name, line in lines.items():
        adapter = families.get(name)
        assert f"Diffusers {adapter.diffusers_classes[0]}" in line and f"SGLang {adapter.port.pipeline}" in line
    flux_cases = sorted(c.name for c in cases.bundled().values() if c.family == "flux")
    assert "flux-tiny" in flux_cases and lines["flux"].endswith("cases: " + ", ".join(flux_cases))
    assert "(model_id FLUX.1-dev)" in lines["flux"]


def test_one_family_by_name_and_an_unknown_one(capsys):
    assert _exit(["--family", "sd3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("sd3  Diffusers StableDiffusion3Pipeline -> SGLang ")
    assert _exit(["--family", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parity: error: unknown family 'nosuch'; known: flux, ")
