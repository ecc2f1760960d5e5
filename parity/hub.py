"""Hugging Face hub ids as models: `parity run black-forest-labs/FLUX.1-dev` runs the snapshot of that
repo in the Hugging Face cache (HF_HOME / HF_HUB_CACHE), downloaded first only when it is not cached
and the hub can be reached.

A cached snapshot is used as it is, without asking the hub whether a branch moved: the same command
runs the same weights until the cache is updated on purpose (`hf download`), and the report records
the commit. huggingface_hub is imported inside the functions, so checking or listing cases never
pays for it; nothing here imports diffusers or sglang.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from parity import progress
from parity.errors import ParityError

INDEX = "model_index.json"
# huggingface_hub's rules for a repo id (utils/_validators.py, validate_repo_id), with the owner
# required: each part word characters, '-' and '.', starting and ending with a word character, at
# most 96 long, no '--' or '..' anywhere, no '.git' at the end.
_PART = r"\w(?:[\w.-]{0,94}\w)?"
_HUB_ID = re.compile(rf"{_PART}/{_PART}")
# Files no run reads: parity loads safetensors only (parity.runners.weights), in their default
# variant, so pickles, other frameworks' formats and fp16/bf16 variants are never downloaded.
IGNORED = [
    *("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl"),
    *("*.msgpack", "*.h5", "*.ot", "*.onnx", "*.onnx_data", "*.pb"),
    *("*.fp16.*", "*.fp16-*", "*.bf16.*", "*.bf16-*"),
]


class _NotCached(Exception):
    """The cache cannot give the snapshot; the text says why, after the repo's name."""


class _Unreachable(Exception):
    """The hub could not be asked; the text says why in a few words."""


def is_hub_id(text: str) -> bool:
    """`owner/name` as the hub spells a repo id (syntax only)."""
    return bool(_HUB_ID.fullmatch(text)) and "--" not in text and ".." not in text and not text.endswith(".git")


def looks_like_hub_id(text: str) -> bool:
    """A hub id, and not what a user more likely meant: an existing local path or a case file. A bundled
    case's name is its file's stem, which never holds the '/' every hub id has."""
    return is_hub_id(text) and not text.endswith(".toml") and not Path(text).exists()


def cache_dir() -> Path:
    """The Hugging Face cache, as huggingface_hub reads it (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot directory of a Diffusers pipeline repo (model_index.json at its root), named
    by its commit hash: the cached one, else downloaded when the hub can be reached. Any other outcome
    is a ParityError of one line."""
    with _hub_errors(repo_id, revision):
        try:
            return _cached(repo_id, revision)
        except _NotCached as exc:
            missing = str(exc)
    why = _offline_reason()
    if why is None:
        progress.say(f"{_label(repo_id, revision)} {missing}: downloading it from the Hugging Face hub")
        try:
            with _hub_errors(repo_id, revision):
                return _download(repo_id, revision)
        except _Unreachable as exc:
            why = str(exc)
    command = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    raise ParityError(
        f"{_label(repo_id, revision)} {missing} and the hub cannot be reached ({why}): download it first "
        f"with `{command}` or pass a local model directory"
    )


def _cached(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True, allow_patterns=[INDEX]))
    except LocalEntryNotFoundError:
        raise _NotCached(f"is not in the Hugging Face cache ({cache_dir()})") from None
    if not (folder / INDEX).is_file():
        if _offline_reason() is not None:
            raise ParityError(_not_a_pipeline(repo_id, revision, folder) + " (or only part of the repo is cached)")
        raise _NotCached(f"has no {INDEX} in its cached snapshot {folder.name}")  # online: the hub knows better
    lacking = _lacking(repo_id, folder, _components(repo_id, revision, folder))
    if lacking:
        raise _NotCached(f"is only partly in the Hugging Face cache ({cache_dir()}: lacks {', '.join(lacking)})")
    return folder


def _lacking(repo_id: str, folder: Path, components: list[str]) -> list[str]:
    """What a cached snapshot misses: component folders, or files that the commit's cached listing
    names (huggingface_hub keeps one for what it downloaded, and checks against it)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError

    lacking = [name for name in components if not (folder / name).is_dir()]
    try:
        snapshot_download(
            repo_id,
            revision=folder.name,
            local_files_only=True,
            allow_patterns=_allowed(components),
            ignore_patterns=IGNORED,
        )
    except IncompleteSnapshotError:
        return lacking or ["some files of its components"]
    return lacking


def _download(repo_id: str, revision: str | None) -> Path:
    """model_index.json first, to learn the components, then their folders only: a repo may also hold
    single-file checkpoints that no Diffusers pipeline reads (FLUX.1-dev holds one of 23 GB)."""
    from huggingface_hub import snapshot_download

    first = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[INDEX]))
    components = _components(repo_id, revision, first)
    # By commit, not branch: both downloads get the same revision even if the branch moves in between.
    return Path(
        snapshot_download(repo_id, revision=first.name, allow_patterns=_allowed(components), ignore_patterns=IGNORED)
    )


def _components(repo_id: str, revision: str | None, folder: Path) -> list[str]:
    """The component folders model_index.json names (a `[null, null]` entry is an absent component)."""
    try:
        index = json.loads((folder / INDEX).read_text())
    except FileNotFoundError:
        raise ParityError(_not_a_pipeline(repo_id, revision, folder)) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ParityError(f"{folder / INDEX} is not valid JSON: {exc}") from None
    if not isinstance(index, dict) or "_class_name" not in index:
        raise ParityError(f"{folder / INDEX} has no _class_name: not a Diffusers pipeline repo")
    return [
        name
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None
    ]


def _allowed(components: list[str]) -> list[str]:
    return [INDEX, *(f"{name}/*" for name in components)]


@contextmanager
def _hub_errors(repo_id: str, revision: str | None) -> Iterator[None]:
    """huggingface_hub's exceptions as one line each, saying what to do."""
    import httpx
    from huggingface_hub import constants, errors

    label = _label(repo_id, revision)
    try:
        yield
    except errors.GatedRepoError:
        raise ParityError(
            f"{repo_id} is a gated repo: accept its terms on {constants.ENDPOINT}/{repo_id}, then log in "
            "(`hf auth login` or HF_TOKEN)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise ParityError(
            f"{repo_id}: no such model repo on the Hugging Face hub, or a private one this machine is not "
            "logged in for (`hf auth login` or HF_TOKEN)"
        ) from None
    except errors.RevisionNotFoundError:
        raise ParityError(f"{repo_id} has no revision {revision!r} on the Hugging Face hub") from None
    except errors.LocalEntryNotFoundError as exc:  # online, but the hub could not be reached: its cause says why
        raise _Unreachable(_why(exc.__cause__ or exc)) from None
    except (httpx.TransportError, ConnectionError) as exc:  # OfflineModeIsEnabled is a ConnectionError
        raise _Unreachable(_why(exc)) from None
    except errors.HfHubHTTPError as exc:
        raise ParityError(f"{label}: the Hugging Face hub refused the request ({_why(exc)})") from None
    except errors.HFValidationError as exc:
        raise ParityError(f"{repo_id!r} is not a Hugging Face hub id: {_why(exc)}") from None


def _label(repo_id: str, revision: str | None) -> str:
    return f"{repo_id} at revision {revision}" if revision else repo_id


def _not_a_pipeline(repo_id: str, revision: str | None, folder: Path) -> str:
    label = _label(repo_id, revision)
    return f"{label} is not a Diffusers pipeline repo: no {INDEX} at the root of its snapshot {folder}"


def _offline_reason() -> str | None:
    """The variable that turned huggingface_hub's offline mode on, or None when it may go online."""
    from huggingface_hub import constants

    if not constants.is_offline_mode():
        return None
    only_transformers = os.environ.get("TRANSFORMERS_OFFLINE") and not os.environ.get("HF_HUB_OFFLINE")
    return "TRANSFORMERS_OFFLINE=1" if only_transformers else "HF_HUB_OFFLINE=1"


def _why(exc: BaseException) -> str:
    """An exception in a few words: huggingface_hub's messages run over several lines."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return _offline_reason() or "HF_HUB_OFFLINE=1"
    first = (str(exc).strip().splitlines() or [""])[0]
    first = first if len(first) <= 160 else first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
