"""Report directories read back: `load_report` (a run's checks as a pandas DataFrame, the run-level
fields in `df.attrs`) and `compare` (what changed between two runs' checks: `parity compare A B`).

Pure: json and pandas only. Neither torch nor a pipeline library is imported, so reading or comparing
reports costs no library load and works on a machine without them (a report copied off a GPU box).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from parity import stages
from parity.errors import ParityError
from parity.files import json_safe

# The report.json schema versions this module reads (parity.results.SCHEMA_VERSION writes the newest;
# a test holds the two together: parity.results imports torch, this module must not).
SCHEMA_VERSIONS = frozenset({1})

KEY = ("stage", "tensor", "step", "block")  # one check per key within a comparison (Check.ident)
# Every report.json check row has these (parity.compare.Check.row); the metrics only where both sides
# recorded the tensor, so a report whose checks all miss a side has no metric field at all.
REQUIRED = ("stage", "tensor", "step", "block", "passed", "status")
FLOATS = ("atol", "rtol", "max_rel_l2", "min_atol", "max_abs", "mean_abs", "rel_l2", "cosine", "sqnr_db")
INTEGERS = ("step", "reference_nonfinite", "port_nonfinite")
FLAGS = ("shape_match", "dtype_match")
# Every column, in report.json's order: a table of checks that all miss a side still has them all.
COLUMNS = (
    "stage", "tensor", "step", "block", "passed", "status", "tolerance", "atol", "rtol", "max_rel_l2",
    "tolerance_source", "min_atol", "message", "role", "shape_match", "dtype_match", "reference_shape",
    "port_shape", "reference_dtype", "port_dtype", "max_abs", "mean_abs", "rel_l2", "cosine", "sqnr_db",
    "reference_nonfinite", "port_nonfinite", "evidence",
)  # fmt: skip

# The checks a report holds besides the main comparison's (`load_report(dir, section=...)`).
SECTIONS = ("checks", "isolated", "parallel.vs_one_rank", "parallel.rank_agreement")

# Run-level fields `compare` holds side by side: what makes two runs different runs. The case's
# expectation (`expected`, `reason`, `expected_divergence`) and `suite` say how the suite judges it,
# not how it ran, so they are left out.
_NOT_PARAMETERS = {"expected", "reason", "expected_divergence", "suite"}


# --- loading ----------------------------------------------------------------------------------------


def report_path(path: str | Path) -> Path:
    """report.json of a report directory (or the file itself); ParityError when there is none."""
    path = Path(path)
    if path.is_dir():
        found = path / "report.json"
        if not found.is_file():
            raise ParityError(f"{path} holds no report.json: not a parity report directory")
        return found
    if path.is_file():
        return path
    raise ParityError(f"{path}: no such report directory or report.json")


def read_document(path: str | Path) -> dict[str, Any]:
    """report.json's document, checked: a JSON object of a schema version this parity reads."""
    file = report_path(path)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ParityError(f"{file} is not a report.json: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ParityError(f"{file} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except OSError as exc:
        raise ParityError(f"{file} cannot be read: {exc.strerror or exc}") from None
    _check_document(doc, str(file))
    return doc


def _check_document(doc: Any, where: str) -> None:
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise ParityError(f"{where} is not a parity report (no schema_version)")
    version = doc["schema_version"]
    if isinstance(version, bool) or version not in SCHEMA_VERSIONS:
        known = ", ".join(str(v) for v in sorted(SCHEMA_VERSIONS))
        raise ParityError(
            f"{where} has schema_version {version!r}, which this parity does not read (it reads {known}): "
            "read it with the parity version that wrote it"
        )
    if not isinstance(doc.get("checks"), list):
        raise ParityError(f"{where} is not a parity report: `checks` is not a list")
    if not isinstance(doc.get("verdict"), str):
        raise ParityError(f"{where} is not a parity report: `verdict` is not a string")


def load_report(path: str | Path, section: str = "checks") -> pd.DataFrame:
    """The checks of a report directory (or of a report.json) as a DataFrame, one row per check in
    execution order, report.json's column names (README, "What is compared").

    Typed: `step`, `reference_nonfinite`, `port_nonfinite` nullable Int64 (<NA> for a step-level
    check); the distances and limits float64 ("inf"/"-inf" back to infinities, null to NaN); `passed`
    bool; `shape_match`, `dtype_match` nullable boolean; text columns str, or None where absent
    (`block` of a check that is not a block's, `role` of a passing check). `df.attrs` holds the
    run-level fields (verdict, first_divergence, error, summary, mode, case, versions, port_ops, ...:
    every key of report.json but the check lists) and `path`, the report.json read.

    `section`: "checks" (the run's main comparison), "isolated" (`--mode both`), or
    "parallel.vs_one_rank" / "parallel.rank_agreement" (`--port-parallel`).
    """
    file = report_path(path)
    return checks_frame(read_document(file), section, source=str(file))


def checks_frame(doc: Mapping[str, Any], section: str = "checks", source: str = "report.json") -> pd.DataFrame:
    """`load_report` of a report.json document already parsed (`json.loads` of its text)."""
    _check_document(doc, source)
    rows = _section_rows(doc, section, source)
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or any(key not in row for key in REQUIRED):
            missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
            raise ParityError(f"{source}: {section}[{index}] is not a check row (missing {', '.join(missing)})")
        for name in row:
            columns.setdefault(name, [None] * index)
        for name, values in columns.items():
            values.append(_cell(row.get(name), name, f"{source}: {section}[{index}].{name}"))
    frame = pd.DataFrame({name: _column(name, values) for name, values in columns.items()})
    frame.attrs = _attrs(doc, source)
    return frame


def _section_rows(doc: Mapping[str, Any], section: str, source: str) -> list[Any]:
    if section not in SECTIONS:
        raise ParityError(f"unknown report section {section!r}: one of {', '.join(SECTIONS)}")
    if section == "checks":
        return list(doc["checks"])
    part: Any = doc
    for name in section.split("."):
        part = part.get(name) if isinstance(part, dict) else None
    if not isinstance(part, dict):
        raise ParityError(f"{source} has no {section} section (a run with --mode both / --port-parallel has)")
    rows = part.get("checks")
    if rows == "see checks":  # --mode isolated: the main checks are the isolated run's
        return list(doc["checks"])
    if not isinstance(rows, list):
        raise ParityError(f"{source}: {section}.checks is not a list")
    return rows


def _cell(value: Any, name: str, where: str) -> Any:
    if name in FLOATS:
        return _number(value, where)
    if name in INTEGERS:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParityError(f"{where} is {value!r}, not an integer or null")
        return value
    if name == "passed" and not isinstance(value, bool):
        raise ParityError(f"{where} is {value!r}, not true or false")
    if name in ("stage", "tensor", "status") and not isinstance(value, str):
        raise ParityError(f"{where} is {value!r}, not a string")
    if name == "block" and value is not None and not isinstance(value, str):
        raise ParityError(f"{where} is {value!r}, not a string or null")
    return value


def _number(value: Any, where: str) -> float:
    """report.json's numbers back: null is NaN, "inf"/"-inf" the infinities (parity.report's writer)."""
    if value is None:
        return math.nan
    if isinstance(value, str) and value in ("inf", "-inf", "Infinity", "-Infinity", "nan", "NaN"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParityError(f"{where} is {value!r}, not a number")
    return float(value)


def _column(name: str, values: list[Any]) -> pd.Series:
    if name in FLOATS:
        return pd.Series(values, dtype="float64")
    if name in INTEGERS:
        return pd.Series(values, dtype="Int64")
    if name == "passed":
        return pd.Series(values, dtype="bool")
    if name in FLAGS:
        return pd.Series(values, dtype="boolean")
    return pd.Series(values, dtype=object)  # text (None where absent), shapes, evidence, unknown fields


def _attrs(doc: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The run-level fields; the side comparisons' own check lists are left out (each DataFrame
    operation copies attrs: `load_report(dir, section=...)` reads those)."""
    attrs = {key: value for key, value in doc.items() if key != "checks"}
    for name in ("isolated", "parallel"):
        part = attrs.get(name)
        if isinstance(part, dict):
            attrs[name] = {
                key: ({k: v for k, v in value.items() if k != "checks"} if isinstance(value, dict) else value)
                for key, value in part.items()
                if key != "checks"
            }
    attrs["path"] = source
    return attrs


# --- comparing two reports --------------------------------------------------------------------------

NEW_FAILURE = "new_failure"  # failing in B, passing in A (or absent there: see ONLY_B)
FIXED = "fixed"  # failing in A, passing in B
STATUS = "status"  # failing in both, with another status (mismatch -> nonfinite), or passing with another
MOVED = "moved"  # same status, rel_l2 or max_abs moved by more than the factor
ONLY_A = "only_a"
ONLY_B = "only_b"
# Within a stage: the new failures first, then what else changed status, then the errors that moved,
# then the checks one side lacks.
_KIND_ORDER = {NEW_FAILURE: 0, FIXED: 1, STATUS: 1, MOVED: 2, ONLY_B: 3, ONLY_A: 3}
_KIND_LABEL = {
    NEW_FAILURE: "NEW FAILURE",
    FIXED: "fixed",
    STATUS: "status",
    MOVED: "moved",
    ONLY_A: "only in A",
    ONLY_B: "only in B",
}
METRICS = ("rel_l2", "max_abs")


def ratio(a: float, b: float) -> float:
    """b / a, with what a division does not handle: equal values (zeros and infinities included) are
    1, growth from 0 is inf, a fall to 0 is 0; NaN when either is NaN (a side has no such number)."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a == b:
        return 1.0
    if a == 0 or math.isinf(b):
        return math.inf if abs(b) > abs(a) else 0.0
    if math.isinf(a):
        return 0.0
    return b / a


def beyond(value: float, factor: float) -> bool:
    """Whether a ratio is more than `factor` either way (NaN is not)."""
    return value > factor or value < 1 / factor


@dataclass(frozen=True)
class Change:
    """One check that differs between report A and report B (or that only one of them has)."""

    kind: str  # NEW_FAILURE, FIXED, STATUS, MOVED, ONLY_A, ONLY_B
    stage: str
    tensor: str
    step: int | None
    block: str | None
    status_a: str | None  # None: A has no such check
    status_b: str | None
    passed_a: bool | None
    passed_b: bool | None
    rel_l2_a: float = math.nan
    rel_l2_b: float = math.nan
    max_abs_a: float = math.nan
    max_abs_b: float = math.nan
    message_b: str = ""  # B's message on a failing check (what exceeds what)
    role_b: str | None = None  # B's role of a failing check: cause, or downstream of an earlier failure
    order: tuple = field(default=(), compare=False)  # execution order, to sort by

    @property
    def rel_l2_ratio(self) -> float:
        return ratio(self.rel_l2_a, self.rel_l2_b)

    @property
    def max_abs_ratio(self) -> float:
        return ratio(self.max_abs_a, self.max_abs_b)

    @property
    def new_failure(self) -> bool:
        """Failing in B, passing or absent in A."""
        return self.passed_b is False and self.passed_a is not False

    def where(self) -> dict[str, Any]:
        return {"stage": self.stage, "tensor": self.tensor, "step": self.step, "block": self.block}

    def label(self) -> str:
        """Within its stage: `hidden_states step 2 block transformer_blocks.1`."""
        parts = [self.tensor]
        parts += [f"step {self.step}"] if self.step is not None else []
        parts += [f"block {self.block}"] if self.block is not None else []
        return " ".join(parts)

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"kind": self.kind, **self.where(), "new_failure": self.new_failure}
        row |= {"status_a": self.status_a, "status_b": self.status_b, "passed_a": self.passed_a}
        row |= {"passed_b": self.passed_b}
        for name in METRICS:
            row |= {f"{name}_a": getattr(self, f"{name}_a"), f"{name}_b": getattr(self, f"{name}_b")}
            row[f"{name}_ratio"] = getattr(self, f"{name}_ratio")
        row["message_b"] = self.message_b
        row["role_b"] = self.role_b
        return row


@dataclass(frozen=True)
class Side:
    """One of the two reports as the comparison shows it."""

    path: str
    verdict: str
    first_divergence: dict | None
    error: str | None
    checks: int
    passed: int

    @classmethod
    def of(cls, frame: pd.DataFrame, shown: str | None = None) -> Side:
        """`shown`: the path as the user gave it (default: the report.json read, from `attrs`)."""
        attrs = frame.attrs
        return cls(
            shown or str(attrs.get("path", "<DataFrame>")),
            str(attrs.get("verdict", "?")),
            attrs.get("first_divergence"),
            attrs.get("error"),
            len(frame),
            int(frame["passed"].sum()) if "passed" in frame else 0,
        )

    def line(self, name: str) -> str:
        text = f"{name}: {self.path}: {self.verdict.upper()} ({self.passed}/{self.checks} checks passed)"
        if self.first_divergence:
            text += f"; first divergence: {_where(self.first_divergence)}"
        if self.error:
            text += f"; error: {' '.join(str(self.error).split())}"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "verdict": self.verdict,
            "first_divergence": self.first_divergence,
            "error": self.error,
            "summary": {"checks": self.checks, "passed": self.passed, "failed": self.checks - self.passed},
        }


@dataclass(frozen=True)
class Comparison:
    """Report B against report A (`compare(a, b)`): both verdicts, the run parameters that differ,
    and every check that changed, grouped by stage in execution order (stages.ORDER)."""

    a: Side
    b: Side
    differences: dict[str, tuple[Any, Any]]  # run parameter -> (A's value, B's value), those that differ
    changes: tuple[Change, ...]  # by stage in execution order; in a stage, new failures first
    paired: int  # checks both reports have
    factor: float

    @property
    def new_failures(self) -> tuple[Change, ...]:
        """Checks failing in B that pass in A or that A does not have."""
        return tuple(c for c in self.changes if c.new_failure)

    @property
    def verdict_regressed(self) -> bool:
        """B could not run (verdict error) where A did: no checks to point at, still a new failure."""
        return self.b.verdict == "error" and self.a.verdict != "error"

    @property
    def exit_code(self) -> int:
        """1 when B has a failure that A did not, else 0 (bad input is a ParityError: 2)."""
        return 1 if self.new_failures or self.verdict_regressed else 0

    @property
    def same_case(self) -> bool:
        return "case.name" not in self.differences

    @property
    def by_stage(self) -> dict[str, list[Change]]:
        grouped: dict[str, list[Change]] = {}
        for change in self.changes:
            grouped.setdefault(change.stage, []).append(change)
        return grouped

    def counts(self) -> Counter[str]:
        return Counter(c.kind for c in self.changes)

    def as_json(self) -> dict[str, Any]:
        """`parity compare --json`: JSON-safe as report.json is (NaN null, infinities "inf"/"-inf")."""
        doc = {
            "a": self.a.as_json(),
            "b": self.b.as_json(),
            "same_case": self.same_case,
            "differences": {key: {"a": a, "b": b} for key, (a, b) in self.differences.items()},
            "factor": self.factor,
            "paired": self.paired,
            "counts": {kind: self.counts().get(kind, 0) for kind in _KIND_LABEL},
            "new_failures": [c.where() for c in self.new_failures],
            "verdict_regressed": self.verdict_regressed,
            "exit_code": self.exit_code,
            "stages": {stage: [c.as_json() for c in changes] for stage, changes in self.by_stage.items()},
        }
        return json_safe(doc)

    def lines(self, limit: int = 10) -> list[str]:
        """What `parity compare` prints: both verdicts, what differs in how they ran, then per stage
        the changed checks (up to `limit` a stage, 0: all), and the conclusion."""
        out = [self.a.line("A"), self.b.line("B")]
        if self.differences:
            differing = "; ".join(f"{key} {_show(a)} -> {_show(b)}" for key, (a, b) in self.differences.items())
            out.append(f"runs differ in: {differing}")
            if not self.same_case:
                out.append("  (different cases: checks are paired by stage, tensor, step and block only)")
        else:
            out.append("runs differ in: nothing recorded (same case, parameters, op mode and versions)")
        counts = self.counts()
        changed = len(self.changes) - counts[ONLY_A] - counts[ONLY_B]
        out.append(
            f"{self.paired} checks in both reports, {changed} changed (status, or rel_l2/max_abs beyond "
            f"{self.factor:g}x either way); only in A: {counts[ONLY_A]}; only in B: {counts[ONLY_B]}"
        )
        for stage, changes in self.by_stage.items():
            shown = changes if limit <= 0 else changes[:limit]
            out.append(f"{stage}: {len(changes)} changed")
            out += _stage_lines(shown)
            if len(changes) > len(shown):
                out.append(f"  … and {len(changes) - len(shown)} more")
        if self.exit_code:
            why = [f"{len(self.new_failures)} failing check(s) that A passes or lacks"] if self.new_failures else []
            why += ["B's verdict is error where A's is not"] if self.verdict_regressed else []
            out.append(f"B has a failure that A did not: {'; '.join(why)}")
        else:
            out.append("B has no failure that A did not")
        return out


def compare(a: pd.DataFrame | str | Path, b: pd.DataFrame | str | Path, factor: float = 2.0) -> Comparison:
    """What changed from report A to report B (each a report directory, a report.json, or
    `load_report`'s DataFrame). Checks are paired by (stage, tensor, step, block); a pair is listed
    when its status (or passing) changed, or when its rel_l2 or max_abs moved by more than `factor`
    either way (a change from or to 0 counts as infinite; NaN, a side without the number, never);
    checks only one report has are listed too."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 1):
        raise ParityError(f"--factor must be a number > 1, got {factor!r}")
    frame_a = a if isinstance(a, pd.DataFrame) else load_report(a)
    frame_b = b if isinstance(b, pd.DataFrame) else load_report(b)
    rows_a, rows_b = dict(_keyed(frame_a)), dict(_keyed(frame_b))
    # Execution order: B's order; a check only A has goes after the last check both have before it in A.
    changes: list[Change] = []
    for position, (key, row_b) in enumerate(rows_b.items()):
        change = _change(rows_a.get(key), row_b, factor, (position, 0))
        if change is not None:
            changes.append(change)
    positions_b = {key: i for i, key in enumerate(rows_b)}
    last_shared = -1
    for position, (key, row_a) in enumerate(rows_a.items()):
        if key in positions_b:
            last_shared = positions_b[key]
        else:
            changes.append(_change(row_a, None, factor, (last_shared, 1, position)))  # type: ignore[arg-type]
    changes.sort(key=_sort_key)
    paired = sum(key in rows_a for key in rows_b)
    diff = differences(frame_a.attrs, frame_b.attrs)
    side_a = Side.of(frame_a, None if isinstance(a, pd.DataFrame) else str(a))
    side_b = Side.of(frame_b, None if isinstance(b, pd.DataFrame) else str(b))
    return Comparison(side_a, side_b, diff, tuple(changes), paired, float(factor))


def _keyed(frame: pd.DataFrame) -> Iterator[tuple[tuple, dict[str, Any]]]:
    """(key, row) per check, the key made unique by its occurrence (a report holds each key once;
    a hand-made one may not, and its repeats pair in order)."""
    missing = [name for name in REQUIRED if name not in frame.columns]
    if missing:
        raise ParityError(f"not a checks table (load_report's DataFrame): no column {', '.join(missing)}")
    seen: Counter[tuple] = Counter()
    for record in frame.to_dict("records"):
        row = {name: (None if _absent(value) else value) for name, value in record.items()}
        for name in ("step", "block"):  # NaN there too (a table read from checks.csv) is "not a step's"
            value = row[name]
            if isinstance(value, float) and math.isnan(value):
                row[name] = None
        step = row["step"]
        key = (row["stage"], row["tensor"], None if step is None else int(step), row["block"])
        seen[key] += 1
        yield (*key, seen[key] - 1), row


def _absent(value: Any) -> bool:
    """None, pandas' NA; a float NaN stays (the metrics keep NaN)."""
    return value is None or value is pd.NA


def _float(row: Mapping[str, Any] | None, name: str) -> float:
    value = None if row is None else row.get(name)
    return math.nan if value is None else float(value)


def _change(row_a: dict | None, row_b: dict | None, factor: float, order: tuple) -> Change | None:
    row = row_b if row_b is not None else row_a
    assert row is not None
    passed_a = None if row_a is None else bool(row_a["passed"])
    passed_b = None if row_b is None else bool(row_b["passed"])
    status_a = None if row_a is None else str(row_a["status"])
    status_b = None if row_b is None else str(row_b["status"])
    numbers = {f"{name}_{side}": _float(r, name) for name in METRICS for side, r in (("a", row_a), ("b", row_b))}
    if row_a is None:
        kind = ONLY_B
    elif row_b is None:
        kind = ONLY_A
    elif passed_a and not passed_b:
        kind = NEW_FAILURE
    elif passed_b and not passed_a:
        kind = FIXED
    elif status_a != status_b:
        kind = STATUS
    elif any(beyond(ratio(numbers[f"{n}_a"], numbers[f"{n}_b"]), factor) for n in METRICS):
        kind = MOVED
    else:
        return None
    failing_b = row_b if row_b is not None and not passed_b else None
    message = str(failing_b.get("message") or "") if failing_b is not None else ""
    role = failing_b.get("role") if failing_b is not None else None
    step = row["step"]
    return Change(
        kind,
        str(row["stage"]),
        str(row["tensor"]),
        None if step is None else int(step),
        row["block"],
        status_a,
        status_b,
        passed_a,
        passed_b,
        message_b=message,
        role_b=None if role is None else str(role),
        order=order,
        **numbers,
    )


def _stage_rank(stage: str) -> tuple[int, str]:
    return (stages.ORDER.index(stage), "") if stage in stages.ORDER else (len(stages.ORDER), stage)


def _sort_key(change: Change) -> tuple:
    """Stage in execution order; in a stage, new failures first (with the failing checks only B has:
    the default policy's rerun records a failing step's blocks in B alone, the cause among them), then
    other status changes (both in execution order), the errors that moved most, then checks one side lacks."""
    kind = _KIND_ORDER[NEW_FAILURE if change.kind == ONLY_B and change.passed_b is False else change.kind]
    moved = 0.0
    if change.kind == MOVED:
        moved = -max(_log_size(change.rel_l2_ratio), _log_size(change.max_abs_ratio))
    return (_stage_rank(change.stage), kind, moved, change.order)


def _log_size(value: float) -> float:
    if math.isnan(value):
        return 0.0
    if value == 0 or math.isinf(value):
        return math.inf
    return abs(math.log(value))


def parameters(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """How a run ran, flat: the case's keys (`case.dtype`, `case.device`, `case.port_ops`, ...), the
    mode, the op mode the port ran in, the block policy, the libraries' versions and the pipelines."""
    found: dict[str, Any] = {}
    case = attrs.get("case") or {}
    if isinstance(case, dict):
        found |= {f"case.{k}": v for k, v in case.items() if k not in _NOT_PARAMETERS}
    found["mode"] = attrs.get("mode")
    found["family"] = attrs.get("family")
    ops = attrs.get("port_ops")
    found["port_ops.mode"] = ops.get("mode") if isinstance(ops, dict) else None
    capture = attrs.get("capture")
    found["capture.block_policy"] = capture.get("block_policy") if isinstance(capture, dict) else None
    for name in ("versions", "pipelines", "device_numerics"):
        part = attrs.get(name)
        if isinstance(part, dict):
            found |= {f"{name}.{k}": v for k, v in part.items()}
    found["plugins"] = attrs.get("plugins")
    return found


def differences(attrs_a: Mapping[str, Any], attrs_b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The run parameters (`parameters`) whose values differ, A's and B's (None where one lacks it)."""
    pa, pb = parameters(attrs_a), parameters(attrs_b)
    return {key: (pa.get(key), pb.get(key)) for key in dict.fromkeys([*pa, *pb]) if pa.get(key) != pb.get(key)}


# --- text -------------------------------------------------------------------------------------------


def _where(where: Mapping[str, Any]) -> str:
    text = f"{where.get('stage')}/{where.get('tensor')}"
    text += f" step {where['step']}" if where.get("step") is not None else ""
    text += f" block {where['block']}" if where.get("block") is not None else ""
    return text


def _show(value: Any) -> str:
    return "–" if value is None else str(value)


def _num(value: float) -> str:
    return "–" if math.isnan(value) else f"{value + 0.0:.3g}"  # + 0.0: -0.0 reads 0


def _ratio_text(a: float, b: float) -> str:
    """B's number against A's: ` (x10)`, or where a division says nothing, from/to 0 or infinity."""
    value = ratio(a, b)
    if math.isnan(value) or value == 1.0:
        return ""
    if math.isinf(value):
        return " (from 0)" if a == 0 else " (to inf)"
    if value == 0:
        return " (to 0)" if b == 0 else " (from inf)"
    return f" (x{value:.3g})"


def _cells(change: Change) -> list[str]:
    """One changed check as the columns `parity compare` prints: kind, check, status A -> B, rel_l2 and
    max_abs A -> B with the ratio (left out where neither side has the number)."""
    status = f"{_show(change.status_a)} -> {_show(change.status_b)}"
    status += f" ({change.role_b})" if change.role_b else ""  # a cause, or downstream of an earlier failure
    cells = [_KIND_LABEL[change.kind], change.label(), status]
    for name in METRICS:
        a, b = getattr(change, f"{name}_a"), getattr(change, f"{name}_b")
        ratio_text = _ratio_text(a, b)
        cells.append("" if math.isnan(a) and math.isnan(b) else f"{name} {_num(a)} -> {_num(b)}{ratio_text}")
    return cells


def _stage_lines(changes: list[Change]) -> list[str]:
    """The changed checks of one stage, in aligned columns, each failing one's message in B below it."""
    table = [_cells(change) for change in changes]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for change, row in zip(changes, table, strict=True):
        lines.append(("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))).rstrip())
        if change.message_b and change.kind in (NEW_FAILURE, STATUS, ONLY_B):
            lines.append(" " * (4 + widths[0]) + change.message_b)
    return lines
