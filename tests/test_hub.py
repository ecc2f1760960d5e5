"""Hub ids as models (parity.hub): resolved through a real Hugging Face cache laid out in tmp_path
as huggingface_hub lays it out, read by huggingface_hub itself (no mock of its API), offline."""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest

from parity import cases, hub
from parity.cli import main
from parity.errors import ParityError
from parity.session import hub_case

REPO = "acme/flux-tiny"
INDEX = {
    "_class_name": "FluxPipeline",
    "_diffusers_version": "0.37.0",
    "transformer": ["diffusers", "FluxTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "image_encoder": [None, None],  # an absent component: no folder expected
}


def model_files(index=INDEX):
    """A model_index.json and a config per component: enough to resolve, not to run."""
    files = {"model_index.json": json.dumps(index).encode()}
    return files | {
        f"{name}/config.json": b"{}" for name, value in index.items() if isinstance(value, list) and value[0]
    }


def cache_repo(cache, repo_id, files, refs=("main",), listing=None):
    """`files` as huggingface_hub caches them: blobs named by their sha256, the snapshot's files relative
    symlinks to them, refs/<ref> holding the commit; `listing`: the commit's tree listing
    (trees/<commit>.json), which huggingface_hub keeps for what it downloaded. The snapshot's path."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    for rel, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # as huggingface_hub writes it: no newline
    if listing is not None:
        entries = {path: {"size": 2, "blob_id": hashlib.sha1(path.encode()).hexdigest()} for path in listing}
        (repo / "trees").mkdir(exist_ok=True)
        (repo / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": entries}))
    return repo / "snapshots" / commit


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline. huggingface_hub reads HF_HUB_CACHE and HF_HUB_OFFLINE when
    it is imported, so its constants are patched too (the environment is for child processes)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def not_cached_line(cache, target, revision=None):
    label = f"{target} at revision {revision}" if revision else target
    command = f"hf download {target}" + (f" --revision {revision}" if revision else "")
    return (
        f"{label} is not in the Hugging Face cache ({cache}) and the hub cannot be reached (HF_HUB_OFFLINE=1): "
        f"download it first with `{command}` or pass a local model directory"
    )


def error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("parity: error:")]
    assert len(err) == 1, err
    return err[0].removeprefix("parity: error: ")


# -- what counts as a hub id ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["black-forest-labs/FLUX.1-dev", "Qwen/Qwen-Image", "acme/flux_tiny"])
def test_hub_ids(text):
    assert hub.looks_like_hub_id(text)


@pytest.mark.parametrize(
    "text",
    ["flux-tiny", "gpt2", "a/b/c", "/abs/dir", "./x", "acme/mine.toml", "a--b/c", "acme/x.git", "-a/b", "a/b."],
)
def test_not_hub_ids(text):
    assert not hub.looks_like_hub_id(text)


def test_an_existing_directory_is_not_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "models" / "flux").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert hub.is_hub_id("models/flux") and not hub.looks_like_hub_id("models/flux")


# -- resolving through the cache -----------------------------------------------------------------------


def test_resolves_main(hf_cache):
    snapshot = cache_repo(hf_cache, REPO, model_files())
    assert hub.resolve(REPO) == snapshot
    assert (snapshot / "model_index.json").is_symlink()  # the real layout, read through its links


def test_resolves_a_commit_and_a_named_ref(hf_cache):
    main_snapshot = cache_repo(hf_cache, REPO, model_files())
    tagged = cache_repo(hf_cache, REPO, model_files() | {"transformer/extra.json": b"{}"}, refs=("v1.0",))
    assert hub.resolve(REPO, tagged.name) == tagged  # a commit hash
    assert hub.resolve(REPO, "v1.0") == tagged  # a tag or branch, through refs/
    assert hub.resolve(REPO) == main_snapshot


def test_not_cached_offline_is_one_line(hf_cache):
    with pytest.raises(ParityError) as exc:
        hub.resolve("acme/missing")
    assert str(exc.value) == not_cached_line(hf_cache, "acme/missing")


def test_a_revision_not_cached_offline(hf_cache):
    cache_repo(hf_cache, REPO, model_files())
    with pytest.raises(ParityError) as exc:
        hub.resolve(REPO, "v9")
    assert str(exc.value) == not_cached_line(hf_cache, REPO, "v9")


def test_a_snapshot_without_model_index_is_not_a_pipeline_repo(hf_cache):
    snapshot = cache_repo(hf_cache, "acme/bert", {"config.json": b"{}", "model.safetensors": b"x"})
    with pytest.raises(ParityError) as exc:
        hub.resolve("acme/bert")
    assert str(exc.value).startswith(
        f"acme/bert is not a Diffusers pipeline repo: no model_index.json at the root of its snapshot {snapshot}"
    )


@pytest.mark.parametrize(
    ("listing", "lacking"),
    [
        (None, "lacks transformer"),  # a component folder missing
        (
            ["model_index.json", "vae/config.json", "transformer/config.json", "transformer/model.safetensors"],
            "lacks some files of its components",
        ),  # a file the cached tree listing names
    ],
)
def test_a_partly_cached_snapshot_offline(hf_cache, listing, lacking):
    files = model_files()
    if listing is None:
        del files["transformer/config.json"]
    cache_repo(hf_cache, REPO, files, listing=listing)
    with pytest.raises(ParityError) as exc:
        hub.resolve(REPO)
    message = str(exc.value)
    assert f"{REPO} is only partly in the Hugging Face cache ({hf_cache}: {lacking})" in message
    assert (
        "the hub cannot be reached (HF_HUB_OFFLINE=1): download it first with `hf download acme/flux-tiny`" in message
    )


def test_the_listing_ignores_weights_parity_never_reads(hf_cache):
    """A pickle or an fp16 variant the listing names but the snapshot lacks is no reason to download."""
    listing = [
        "model_index.json",
        "vae/config.json",
        "transformer/config.json",
        "transformer/model.bin",
        "transformer/model.fp16.safetensors",
        "flux1-dev.safetensors",
    ]
    snapshot = cache_repo(hf_cache, REPO, model_files(), listing=listing)
    assert hub.resolve(REPO) == snapshot


def test_an_unreachable_hub_online(hf_cache, monkeypatch):
    """Online, the hub is asked: a closed port on this machine answers at once, a real ConnectError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ParityError) as exc:
        hub.resolve("acme/missing")
    assert str(exc.value).startswith(
        f"acme/missing is not in the Hugging Face cache ({hf_cache}) and the hub cannot be reached (ConnectError: "
    )


# -- cases and the report --------------------------------------------------------------------------------


def test_resolution_records_the_hub_id_the_commit_and_the_snapshot(hf_cache):
    snapshot = cache_repo(hf_cache, REPO, model_files(), refs=("main", "v1.0"))
    timings = {}
    case = hub_case(cases.resolve(REPO).with_overrides(revision="v1.0"), timings)
    assert (case.model_id, case.revision, case.model_dir) == (REPO, snapshot.name, str(snapshot))
    assert not case.from_hub and "hub" in timings
    assert hub_case(case, timings) is case  # resolved once


def test_case_file_with_a_hub_id(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    hub_file, local_file = tmp_path / "hub.toml", tmp_path / "local.toml"
    hub_file.write_text(f'model_dir = "{REPO}"\nrevision = "v1.0"\n')
    local_file.write_text('model_dir = "models/mine"\n')  # a directory beside the case file wins
    case = cases.load_file(hub_file)
    assert (case.model_dir, case.revision, case.from_hub) == (REPO, "v1.0", True)
    local = cases.load_file(local_file)
    assert local.model_dir == str((tmp_path / "models" / "mine").resolve()) and not local.from_hub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('fixture = "flux_tiny"\nrevision = "v1"\n', "revision (--revision) goes with a Hugging Face hub id"),
        (
            f'model_dir = "{REPO}"\nrevision = ""\n',
            'revision must be a branch, tag or commit hash of the hub repo, got ""',
        ),
        (
            'model_dir = "/x"\nmodel_id = "not one"\n',
            'model_id must be a Hugging Face hub id (owner/name), got "not one"',
        ),
        ('model_dir = ""\n', 'model_dir must be a model directory or a Hugging Face hub id (owner/name), got ""'),
    ],
)
def test_bad_hub_keys_in_a_case_file(tmp_path, text, expected):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ParityError, match=re.escape(expected)):
        cases.load_file(path)


# -- the command line ------------------------------------------------------------------------------------


def test_cli_not_cached_offline_exits_2_with_a_report(hf_cache, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "acme/missing", "--out", str(out)]) == 2
    assert error_line(capsys) == not_cached_line(hf_cache, "acme/missing")
    doc = json.loads((out / "report.json").read_text())
    assert doc["verdict"] == "error" and "is not in the Hugging Face cache" in doc["error"]
    assert doc["case"]["model_dir"] == "acme/missing" and doc["case"]["name"] == "acme/missing"


def test_cli_default_out_for_a_hub_id(hf_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "acme/missing", "--revision", "v2"]) == 2
    assert error_line(capsys) == not_cached_line(hf_cache, "acme/missing", "v2")
    doc = json.loads((tmp_path / "reports" / "acme--missing-float32" / "report.json").read_text())
    assert doc["case"]["revision"] == "v2"


def test_cli_report_records_the_resolved_snapshot(hf_cache, tmp_path, capsys):
    """Resolved, then refused for its unknown pipeline class: the report still says which commit it was."""
    snapshot = cache_repo(hf_cache, REPO, model_files(index={**INDEX, "_class_name": "SomeNewPipeline"}))
    out = tmp_path / "out"
    assert main(["run", REPO, "--out", str(out)]) == 2
    assert "no family adapter for pipeline class 'SomeNewPipeline'" in error_line(capsys)
    case = json.loads((out / "report.json").read_text())["case"]
    assert (case["model_id"], case["revision"], case["model_dir"]) == (REPO, snapshot.name, str(snapshot))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "flux-tiny", "--revision", "v1"], "revision (--revision) goes with a Hugging Face hub id"),
        (["run", REPO, "--revision", "a b"], "--revision must be a branch, tag or commit hash of the hub repo"),
        (["run", "nobody-knows"], "or a Hugging Face hub id, owner/name"),
    ],
)
def test_cli_bad_hub_arguments(argv, expected, capsys):
    assert main(argv) == 2
    assert expected in error_line(capsys)


@pytest.mark.pipeline
def test_run_flux_tiny_by_hub_id(hf_cache, tmp_path):
    """flux-tiny cached as a hub repo, run by its id in a fresh process (the environment names the cache)."""
    from parity import fixture_cache

    model, _ = fixture_cache.ensure("flux_tiny")
    files = {str(p.relative_to(model)): p.read_bytes() for p in sorted(model.rglob("*")) if p.is_file()}
    snapshot = cache_repo(hf_cache, REPO, files)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "parity", "run", REPO, "--steps", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | {"HF_HUB_CACHE": str(hf_cache), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.startswith(f"{REPO} [float32, cpu, full]: PASS")
    case = json.loads((out / "report.json").read_text())["case"]
    assert (case["model_id"], case["revision"], case["model_dir"]) == (REPO, snapshot.name, str(snapshot))
    assert Path(case["model_dir"]).parent.parent.name == "models--acme--flux-tiny"
