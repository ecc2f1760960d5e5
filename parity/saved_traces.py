"""`parity run --save-traces`: a run's traces kept in its report directory, to be read back (and judged
again by `parity rejudge`) without running a pipeline.

Layout, under `<report>/traces/`: one safetensors file per trace that recorded anything (`reference`,
`port`, and `isolated`, `native`, `one_rank` when the run made them), its tensors named `r0`, `r1`, ... in
recording order, and `index.json`: every record's key (trace, side, stage, tensor, step, block), its
layout and meta (what the family adapter needs to bring it to the canonical layout), dtype and shape, and
the port runs' Req contracts as observed (by trace name).
Nothing is pickled. Reading one tensor back needs only safetensors:
`safetensors.torch.load_file("traces/port.safetensors")["r12"]`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from parity.errors import ParityError
from parity.files import created_mode, json_safe, write_atomic
from parity.trace import Key, Record, Trace

DIRNAME = "traces"
INDEX = "index.json"
FORMAT_VERSION = 1


def save(traces: Mapping[str, Trace], directory: Path, contracts: Mapping[str, dict] | None = None) -> dict[str, Any]:
    """Every non-empty trace into `directory` (its tensors on the CPU), and beside them in the index the port
    runs' Req contracts by trace name (what the `contract` checks judge); returns what the report says of it."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    files, rows = {}, []
    for name, trace in traces.items():
        if not len(trace):
            continue
        tensors: dict[str, torch.Tensor] = {}
        storages: set[int] = set()
        for i, record in enumerate(trace):
            value = record.value.detach().cpu().contiguous()
            if value.numel() and value.untyped_storage().data_ptr() in storages:
                value = value.clone()  # safetensors refuses two names on one storage
            storages.add(value.untyped_storage().data_ptr())
            tensors[f"r{i}"] = value
            rows.append(_row(name, trace.side, f"r{i}", record, value))
        path = directory / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={"trace": name, "side": trace.side})
        os.chmod(path, created_mode())  # safetensors creates it 0600; every other report file is 0644
        files[name] = {"side": trace.side, "file": f"{name}.safetensors", "records": len(trace)}
    known = {"format_version": FORMAT_VERSION, "traces": files, "contracts": json_safe(dict(contracts or {}))}
    head = json.dumps(known, indent=1, default=str)[: -len("\n}")]
    lines = ",\n".join(" " + json.dumps(json_safe(row), default=str) for row in rows)  # a record a line
    write_atomic(directory / INDEX, f'{head},\n "records": [\n{lines}\n ]\n}}\n')
    total = sum(r["bytes"] for r in rows)
    return {"dir": DIRNAME, "traces": sorted(files), "records": len(rows), "mib": round(total / 2**20, 2)}


def _row(name: str, side: str, tensor_name: str, record: Record, value: torch.Tensor) -> dict[str, Any]:
    return {
        "trace": name,
        "side": side,
        "name": tensor_name,
        "stage": record.stage,
        "tensor": record.key.tensor,
        "step": record.key.step,
        "block": record.key.block,
        "layout": record.layout,
        "meta": record.meta,
        "dtype": str(value.dtype).removeprefix("torch."),
        "shape": list(value.shape),
        "bytes": value.numel() * value.element_size(),
    }


def read_index(directory: Path) -> dict[str, Any]:
    """`index.json` of saved traces, checked; ParityError when the run saved none."""
    path = Path(directory) / INDEX
    if not path.is_file():
        report = Path(directory).parent
        raise ParityError(f"{report} holds no saved traces (no {path}): run it with `parity run ... --save-traces`")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParityError(f"{path} cannot be read: {exc}") from None
    if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION:
        raise ParityError(f"{path} is not a saved-traces index this parity reads (format_version {FORMAT_VERSION})")
    return index


def contracts(directory: Path) -> dict[str, dict]:
    """The port runs' Req contracts saved beside the traces, by trace name (none in an older index)."""
    return dict(read_index(directory).get("contracts") or {})


def load(directory: Path, device: str = "cpu") -> dict[str, Trace]:
    """The traces `save` wrote, by name, each in its recording order, tensors on `device`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = read_index(directory)
    traces: dict[str, Trace] = {}
    for name, entry in index["traces"].items():
        path = Path(directory) / entry["file"]
        try:
            tensors = load_file(str(path), device=device)
        except (OSError, SafetensorError) as exc:
            raise ParityError(f"saved trace {path} cannot be read: {exc}") from None
        traces[name] = Trace(entry["side"], device)
        for row in (r for r in index["records"] if r["trace"] == name):
            if row["name"] not in tensors:
                raise ParityError(f"saved trace {path} lacks {row['name']} ({row['tensor']}), which {INDEX} lists")
            key = Key(row["tensor"], row["step"], row["block"])
            traces[name].extend([Record(key, row["stage"], tensors[row["name"]], row["layout"], row["meta"])])
    return traces
