"""Bad input: exit code 2 and one clear line on stderr, without running a pipeline."""

import json

import pytest
import torch

from parity import cases
from parity.cli import main


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("parity: error:")]
    assert len(err) == 1, err
    return err[0]


def test_missing_directory(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope")]) == 2
    assert "no bundled case or directory named" in _error_line(capsys)


def test_directory_that_is_not_a_diffusers_model_still_writes_a_report(tmp_path, capsys):
    model = tmp_path / "not-a-model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["run", str(model), "--family", "flux", "--out", str(out)]) == 2
    assert "not a Diffusers model directory: no model_index.json" in _error_line(capsys)
    doc = json.loads((out / "report.json").read_text())
    assert doc["verdict"] == "error" and "model_index.json" in doc["error"]


def test_model_index_of_an_unknown_family(tmp_path, capsys):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "SomeNewPipeline"}')
    assert main(["run", str(model), "--out", str(tmp_path / "out")]) == 2
    assert "no family adapter for pipeline class 'SomeNewPipeline'" in _error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "flux-tiny", "--family", "nosuch"], "unknown family 'nosuch'"),
        (["run", "flux-tiny", "--steps", "0"], "--steps must be an integer >= 1, got 0"),
        (["run", "flux-tiny", "--height", "50"], "--height must be an integer >= 16, a multiple of 16, got 50"),
        (["run", "flux-tiny", "--plugin", "does/not/exist.py"], "plugin file does/not/exist.py does not exist"),
        (["run", "flux-tiny", "--plugin", "no_such_module_xyz"], "plugin module no_such_module_xyz failed to import"),
    ],
)
def test_bad_arguments(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in _error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_setup_error_with_a_report(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "flux-tiny", "--device", "cuda", "--out", str(out)]) == 2
    assert "torch sees no CUDA device" in _error_line(capsys)
    assert json.loads((out / "report.json").read_text())["verdict"] == "error"


def test_bad_case_file(tmp_path, capsys):
    case_file = tmp_path / "mine.toml"
    case_file.write_text('fixture = "flux_tiny"\nfamily = "flux"\nsteps = 2\ncolour = "red"\n')
    assert main(["run", str(case_file)]) == 2
    assert "unknown keys ['colour']" in _error_line(capsys)


def test_list_shows_bundled_cases(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cases.bundled())
    assert "flux-tiny" in out


def test_run_help_explains_every_option_and_lists_the_exit_codes():
    from parity.cli import _parser

    run = _parser()._subparsers._group_actions[0].choices["run"]
    for action in run._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help text"
    text = run.format_help()
    for line in ("0    pass", "1    fail", "2    error", "130  interrupted"):
        assert line in text
