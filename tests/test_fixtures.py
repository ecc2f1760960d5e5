import hashlib

from parity import fixture_cache


def _digest(directory):
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_flux_tiny_builds_the_same_bytes_twice(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    fixture_cache.build("flux_tiny", first)
    fixture_cache.build("flux_tiny", second)
    files = _digest(first)
    assert "model_index.json" in files and "transformer/config.json" in files
    assert files == _digest(second)


def test_ensure_builds_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path))
    path, built = fixture_cache.ensure("flux_tiny")
    assert built and (path / "model_index.json").is_file()
    again, built_again = fixture_cache.ensure("flux_tiny")
    assert again == path and not built_again
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary build dirs left


def test_flux_tiny_has_the_required_structure(tmp_path):
    import json

    fixture_cache.build("flux_tiny", tmp_path)
    transformer = json.loads((tmp_path / "transformer" / "config.json").read_text())
    assert transformer["num_layers"] >= 2 and transformer["num_single_layers"] >= 2
    scheduler = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["use_dynamic_shifting"] is True
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    for component in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"):
        assert (tmp_path / component).is_dir()
