"""Safetensors only: a model directory either library could unpickle, or a weights file cut short, is
refused up front (parity.runners.weights) with one line naming the component folder and the file."""

import json
import shutil
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from parity import fixture_cache
from parity.cli import main
from parity.errors import ParityError
from parity.runners.weights import check_model_dir, safetensors_name


@pytest.fixture
def model(tmp_path):
    """A private copy of the cached flux-tiny fixture."""
    path, _ = fixture_cache.ensure("flux_tiny")
    return shutil.copytree(path, tmp_path / "flux-tiny-copy")


def to_pickle(folder, safetensors, pickle_name):
    """Replace `folder/safetensors` by the same weights saved with torch.save as `folder/pickle_name`."""
    state_dict = load_file(folder / safetensors)
    (folder / safetensors).unlink()
    torch.save(state_dict, folder / pickle_name)


def run(model, tmp_path, capsys):
    """(exit code, the one `parity: error:` line, report.json, seconds) of `parity run` on `model`."""
    out = tmp_path / "out"
    start = time.perf_counter()
    code = main(["run", str(model), "--out", str(out)])
    seconds = time.perf_counter() - start
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("parity: error:")]
    assert len(errors) == 1, errors
    return code, errors[0], json.loads((out / "report.json").read_text()), seconds


@pytest.mark.parametrize(
    ("component", "safetensors", "pickle_name"),
    [
        ("text_encoder", "model.safetensors", "pytorch_model.bin"),
        ("transformer", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    ],
)
def test_a_pickle_without_its_safetensors_is_refused_before_any_library_loads(
    model, tmp_path, capsys, component, safetensors, pickle_name
):
    to_pickle(model / component, safetensors, pickle_name)
    code, line, doc, seconds = run(model, tmp_path, capsys)
    assert code == 2
    expected = f"{component}/: no {safetensors} (found {pickle_name}); parity loads safetensors weights only"
    assert expected in line and "Traceback" not in line
    assert doc["verdict"] == "error" and expected in doc["error"]
    # Refused by the scan in the reference runner's load, before Diffusers is imported or loads a
    # thing (a pipeline load takes seconds); the port never ran.
    assert doc["timings_s"]["reference"] < 1.0 and seconds < 10, (doc["timings_s"], seconds)
    assert "port" not in doc["timings_s"] and doc["checks"] == []


def test_the_port_runner_refuses_it_too_before_sglang_is_asked(model):
    from parity.runners import sglang_runner

    to_pickle(model / "text_encoder", "model.safetensors", "pytorch_model.bin")
    # The scan is the first thing SGLang's _load does: no case, adapter or SGLang import is reached.
    with pytest.raises(ParityError, match=r"text_encoder/: no model\.safetensors \(found pytorch_model\.bin\)"):
        sglang_runner._load(model, None, None, "native")


def test_a_truncated_safetensors_file_is_named_in_one_line(model, tmp_path, capsys):
    weights = model / "text_encoder" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    code, line, doc, _ = run(model, tmp_path, capsys)
    assert code == 2 and doc["verdict"] == "error"
    assert "text_encoder/model.safetensors is truncated or corrupt" in line
    assert f"the file has {len(data) // 2}" in line and "Traceback" not in line


@pytest.mark.pipeline
def test_a_config_that_does_not_match_the_weights_names_the_component(model, tmp_path, capsys):
    config_path = model / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["num_attention_heads"] += 1  # a wider inner dimension than the weights hold
    config_path.write_text(json.dumps(config))
    code, line, doc, _ = run(model, tmp_path, capsys)
    assert code == 2 and doc["verdict"] == "error"
    assert "Diffusers cannot load transformer/ of " in line
    assert "expected shape" in line and "Traceback" not in line


def test_the_scan_accepts_safetensors_and_pickles_that_have_their_counterpart(model):
    check_model_dir(model)  # the fixture as built
    # A pickle beside its safetensors counterpart, whole or sharded, and trainer leftovers, are ignored.
    torch.save({}, model / "text_encoder" / "pytorch_model.bin")
    torch.save({}, model / "vae" / "diffusion_pytorch_model.fp16.bin")
    save_file({"w": torch.zeros(2)}, model / "vae" / "diffusion_pytorch_model.fp16.safetensors")
    shards = model / "text_encoder_2"
    for i in (1, 2, 3):
        torch.save({}, shards / f"pytorch_model-0000{i}-of-00003.bin")
    torch.save({}, shards / "training_args.bin")
    check_model_dir(model)  # model.safetensors covers the .bin shards, whatever their count


def test_the_scan_refuses_any_pickle_format_and_names_every_problem(model):
    (model / "text_encoder_2" / "model.safetensors").unlink()
    for i in (1, 2):
        torch.save({}, model / "text_encoder_2" / f"pytorch_model-0000{i}-of-00002.bin")
    torch.save({}, model / "ae.ckpt")
    torch.save({}, model / "transformer" / "adapter_model.bin")  # transformers reads it despite use_safetensors
    with pytest.raises(ParityError) as raised:
        check_model_dir(model)
    message = raised.value.one_line()
    assert message.startswith("./: no ae.safetensors (found ae.ckpt); parity loads safetensors weights only")
    assert "(and 3 more)" in message  # two shards and the adapter
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pytorch_model.bin", "model.safetensors"),
        ("pytorch_model.fp16.bin", "model.fp16.safetensors"),
        ("pytorch_model-00001-of-00002.bin", "model.safetensors"),
        ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"),
        ("diffusion_pytorch_model-00002-of-00003.bin", "diffusion_pytorch_model.safetensors"),
        ("adapter_model.bin", "adapter_model.safetensors"),
        ("weights.pth", "weights.safetensors"),
        ("model.pkl", "model.safetensors"),
    ],
)
def test_safetensors_counterparts(name, expected):
    assert safetensors_name(name) == expected


def test_a_safetensors_file_with_a_broken_header_is_refused(model):
    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes((20).to_bytes(8, "little") + b"{not json at all....")
    with pytest.raises(
        ParityError,
        match=r"vae/diffusion_pytorch_model\.safetensors is truncated or corrupt: its "
        r"header is not valid safetensors JSON",
    ):
        check_model_dir(model)
    weights.write_bytes(b"abc")
    with pytest.raises(ParityError, match="shorter than a safetensors header"):
        check_model_dir(model)
