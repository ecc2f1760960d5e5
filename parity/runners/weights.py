"""Safetensors only: the model directory is scanned before either library loads it.

Both runners call `check_model_dir` first thing in their `_load`, before Diffusers or SGLang is
imported or asked to load anything, so a directory that either library could unpickle is refused
with one line (ParityError, exit 2), and so is a safetensors file cut short (its header describes
more bytes than the file holds), naming the component folder and the file.

Why a scan and not only the libraries' own switches (read in the installed versions):
- Diffusers 0.37: `DiffusionPipeline.from_pretrained(use_safetensors=True)` hands the flag to every
  model component (pipelines/pipeline_loading_utils.py, `load_sub_model`: `loading_kwargs
  ["use_safetensors"]` for Diffusers ModelMixin and transformers PreTrainedModel components).
  `ModelMixin.from_pretrained` (models/modeling_utils.py) then sets `allow_pickle=False` and raises
  instead of "Defaulting to unsafe serialization"; only an unset flag falls back to the `.bin`.
- transformers 5.19: `PreTrainedModel.from_pretrained` (modeling_utils.py,
  `_get_resolved_checkpoint_files`) with `use_safetensors=True` looks for `model.safetensors` or its
  index only, except that a config's `transformers_weights` may still name `adapter_model.bin`,
  which is then read with `torch.load`: one component that can still load a pickle.
- SGLang (multimodal_gen): the DiT (runtime/loader/transformer_load_utils.py,
  `resolve_transformer_checkpoint_files`) and the VAE (runtime/loader/component_loaders/
  vae_loader.py) read safetensors only, but text encoders and generic components go through
  runtime/loader/weight_utils.py `checkpoint_weights_iterator`, which, when a folder holds no
  safetensors, globs `*.bin` then `*.pt` and reads them with `pt_weights_iterator` ->
  `torch.load(weights_only=True)`: a pickle, however restricted. SGLang has no switch for it, so
  this scan is what keeps the port on safetensors.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

from parity.errors import ParityError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Trainer leftovers no library loads as weights (SGLang's weight_utils.filter_files_not_needed_for_inference).
NOT_WEIGHTS = frozenset({"training_args.bin", "optimizer.bin", "optimizer.pt", "scheduler.pt", "scaler.pt"})
_SHARD = re.compile(r"-\d+-of-\d+$")
_HEADER_LIMIT = 100 * 2**20  # safetensors itself refuses headers above 100 MB


def safetensors_name(pickle_name: str) -> str:
    """The safetensors file that holds the same weights as `pickle_name`, shard numbers left out:
    `pytorch_model.bin` -> `model.safetensors` (transformers), `diffusion_pytorch_model.fp16.bin` ->
    `diffusion_pytorch_model.fp16.safetensors` (Diffusers), `pytorch_model-00001-of-00002.bin` ->
    `model.safetensors`, `ae.ckpt` -> `ae.safetensors`."""
    stem = _SHARD.sub("", pickle_name.rsplit(".", 1)[0])
    if stem.startswith("pytorch_model"):
        stem = "model" + stem.removeprefix("pytorch_model")
    return stem + ".safetensors"


def _has_safetensors(folder: Path, files: set[str], name: str) -> bool:
    """`name` (e.g. model.safetensors) is in `folder`: whole, sharded, or by its index."""
    stem = name.removesuffix(".safetensors")
    if name in files or f"{name}.index.json" in files:
        return True
    return any(f.endswith(".safetensors") and _SHARD.sub("", f.removesuffix(".safetensors")) == stem for f in files)


def _folder_label(model_dir: Path, folder: Path) -> str:
    relative = folder.relative_to(model_dir).as_posix()
    return "./" if relative == "." else f"{relative}/"


def truncated(path: Path) -> str | None:
    """Why the safetensors file at `path` cannot be read in full (None when its header and size
    agree): the header (8-byte length, then JSON) is read, never the tensors."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than a safetensors header"
        (length,) = struct.unpack("<Q", head)
        if length > min(_HEADER_LIMIT, size - 8):
            return f"its header claims {length} bytes but the file has {size}"
        try:
            header = json.loads(f.read(length))
            ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "its header is not valid safetensors JSON"
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"its header describes {expected} bytes but the file has {size}"
    return None


def _folders(model_dir: Path):
    """(folder, file names) of the model directory and every folder under it (symbolic links
    followed, each real folder once; hidden folders such as .git or .cache left out)."""
    seen: set[str] = set()
    for root, dirs, files in os.walk(model_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(root), {f for f in files if os.path.isfile(os.path.join(root, f))}


def check_model_dir(model_dir: Path) -> None:
    """ParityError unless every weight file in `model_dir` is a readable safetensors file: a pickle
    file (`.bin`, `.pt`, `.pth`, `.ckpt`, `.pkl`) without its safetensors counterpart, or a
    safetensors file whose size disagrees with its header (cut short), is refused, with its folder
    and file named."""
    model_dir = Path(model_dir)
    pickles: list[str] = []
    broken: list[str] = []
    for folder, files in _folders(model_dir):
        label = _folder_label(model_dir, folder)
        for name in sorted(files):
            if name.endswith(PICKLE_SUFFIXES) and name not in NOT_WEIGHTS:
                wanted = safetensors_name(name)
                if not _has_safetensors(folder, files, wanted):
                    pickles.append(f"{label}: no {wanted} (found {name}); parity loads safetensors weights only")
            elif name.endswith(".safetensors"):
                why = truncated(folder / name)
                if why is not None:
                    broken.append(f"{label}{name} is truncated or corrupt: {why}; re-save or re-download it")
    refused = pickles + broken
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise ParityError(f"{refused[0]}{more} (model directory {model_dir})")
