"""JUnit XML for CI: `parity run --junit FILE` (one testcase) and the suite's reports/junit.xml (one
testcase per case x dtype x mode [x port degrees]). Pure: plain data in (report.json's document,
the suite's rows), XML out through the standard library, written atomically (parity.files).

A testcase is `parity.<case>` / `<dtype>-<mode>[-<degrees>]`. A failing run is a <failure> whose
message is the first divergence (with its tolerance message) and whose text is the hints and the
report's path; a run that could not run is an <error> with the error line. With an expectation (the
suite's), the expectation decides: an expected failure that fails where it is pinned passes (its
<system-out> says which divergence it expects), a run that misses its expectation is a <failure>.
"""

from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parity.errors import ParityError
from parity.files import write_atomic

WHERE = ("stage", "tensor", "step", "block")
# XML 1.0 has no place for most control characters: a library's ANSI colours in an error line go
# whole, any other such character alone.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Expectation:
    """What the suite expects of a run, and its judgement (parity.suite.run_one's `ok`)."""

    verdict: str  # "pass" or "fail"
    met: bool
    at: str | None = None  # an expected failure's pinned first divergence, "<stage>/<tensor>"
    reason: str = ""
    miss: str | None = None  # why a run with the expected verdict and place still misses (its ranks)


@dataclass(frozen=True)
class Run:
    """One run as a testcase needs it."""

    case: str
    dtype: str
    mode: str
    degrees: str | None = None  # the port's ranks, e.g. "tp=2,ulysses=2" (None: one rank)
    verdict: str = "error"
    first: Mapping[str, Any] | None = None  # report.json's first_divergence
    message: str | None = None  # the first divergence's tolerance message
    hints: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None
    report: str | None = None  # the report's path, for the reader
    seconds: float = 0.0
    expected: Expectation | None = None  # None: the verdict alone decides (`parity run --junit`)


def degrees_tag(degrees: str | None) -> str:
    """The degrees as the suite names its report directories: "tp=2,ulysses=2" -> "tp2-ulysses2"; "" for one rank."""
    if degrees is None or degrees.strip() in ("", "1"):
        return ""
    return degrees.replace("=", "").replace(",", "-").replace(" ", "")


def testcase_name(dtype: str, mode: str, degrees: str | None = None) -> str:
    tag = degrees_tag(degrees)
    return f"{dtype}-{mode}" + (f"-{tag}" if tag else "")


def where(first: Mapping[str, Any] | None) -> str | None:
    """A first divergence as a label: "denoising/hidden_states step 0 block transformer_blocks.1"."""
    if not first:
        return None
    label = f"{first.get('stage')}/{first.get('tensor')}"
    label += f" step {first['step']}" if first.get("step") is not None else ""
    return label + (f" block {first['block']}" if first.get("block") is not None else "")


def divergence(run: Run) -> str:
    """The failure message: the first divergence and its tolerance message."""
    label = where(run.first)
    if label is None:
        return f"verdict {run.verdict}, no first divergence recorded"
    return f"first divergence: {label}" + (f" ({run.message})" if run.message else "")


def details(run: Run) -> str:
    """A failure's text: one line per hint, then the report's path."""
    lines = [f"hint ({h.get('at')}): {h.get('symptom')}: likely {h.get('likely_cause')}" for h in run.hints]
    return "\n".join(lines + ([f"report: {run.report}"] if run.report else []))


def _check_lists(doc: Mapping[str, Any]) -> list[list]:
    """report.json's lists of check rows, the comparison the verdict came from (`decided_by`) first."""
    parallel = doc.get("parallel") or {}
    sections = {
        "isolated": (doc.get("isolated") or {}).get("checks"),  # "see checks" in isolated mode
        "parallel.vs_one_rank": (parallel.get("vs_one_rank") or {}).get("checks"),
        "parallel.rank_agreement": (parallel.get("rank_agreement") or {}).get("checks"),
    }
    decided = sections.pop(doc.get("decided_by") or "", None)
    return [rows for rows in (decided, doc.get("checks"), *sections.values()) if isinstance(rows, list)]


def first_message(doc: Mapping[str, Any]) -> str | None:
    """The tolerance message of report.json's first divergence (its `cause` row), if recorded."""
    first = doc.get("first_divergence")
    if not first:
        return None
    for rows in _check_lists(doc):
        for row in rows:
            if row.get("role") == "cause" and all(row.get(k) == first.get(k) for k in WHERE):
                return row.get("message") or None
    return None


def run_from_doc(
    doc: Mapping[str, Any], report: str | None = None, seconds: float = 0.0, expected: Expectation | None = None
) -> Run:
    """A Run from report.json's document (or RunReport.as_json())."""
    case = doc.get("case") or {}
    parallel = str(case.get("port_parallel") or "1")
    return Run(
        case=str(case.get("name", "?")),
        dtype=str(case.get("dtype", "?")),
        mode=str(doc.get("mode", "full")),
        degrees=None if parallel.strip() == "1" else parallel,
        verdict=str(doc.get("verdict", "error")),
        first=doc.get("first_divergence"),
        message=first_message(doc),
        hints=tuple(doc.get("hints") or ()),
        error=doc.get("error"),
        report=report,
        seconds=seconds,
        expected=expected,
    )


def _missed(run: Run, expected: Expectation) -> str:
    """Why a run misses the suite's expectation, as a failure message."""
    pinned = f" at {expected.at}" if expected.at else ""
    if run.verdict == "pass" and expected.verdict == "fail":
        return f"expected to fail{pinned}" + (f" ({expected.reason})" if expected.reason else "") + ", but it passed"
    found = f"{run.first.get('stage')}/{run.first.get('tensor')}" if run.first else None
    if run.verdict == "fail" and expected.verdict == "pass":
        return f"{divergence(run)}; expected to pass"
    if run.verdict == "fail" and expected.at and found != expected.at:
        return f"{divergence(run)}; expected to fail{pinned}"
    return expected.miss or f"verdict {run.verdict}, expected {expected.verdict}{pinned}"


def _clean(text: str) -> str:
    return _NOT_XML.sub("", _ANSI.sub("", text))


def _child(parent: ET.Element, tag: str, message: str | None = None, text: str = "", kind: str | None = None) -> None:
    attrs = {"message": _clean(message)} if message is not None else {}
    attrs |= {"type": kind} if kind else {}
    element = ET.SubElement(parent, tag, attrs)
    if text:
        element.text = _clean(text)


def testcase(run: Run) -> ET.Element:
    """One run's <testcase>: a <failure> or <error> child when it fails, <system-out> for an
    expected failure that failed as expected."""
    element = ET.Element(
        "testcase",
        {
            "classname": f"parity.{run.case}",
            "name": testcase_name(run.dtype, run.mode, run.degrees),
            "time": f"{run.seconds:.3f}",
        },
    )
    expected = run.expected
    if expected is not None and expected.met:
        if expected.verdict == "fail":
            pinned = f" at {expected.at}" if expected.at else ""
            said = f"expected to fail{pinned}: {expected.reason}" if expected.reason else f"expected to fail{pinned}"
            _child(element, "system-out", text="\n".join([said, divergence(run), details(run)]).strip())
    elif run.verdict not in ("pass", "fail"):
        body = "\n".join(x for x in (run.error, f"report: {run.report}" if run.report else "") if x)
        _child(element, "error", run.error or f"verdict {run.verdict}", body, "error")
    elif expected is not None:
        _child(element, "failure", _missed(run, expected), details(run), "expectation")
    elif run.verdict == "fail":
        _child(element, "failure", divergence(run), details(run), "divergence")
    return element


def skipped(case: str, name: str, why: str) -> ET.Element:
    """A testcase the suite did not run, and why."""
    element = ET.Element("testcase", {"classname": f"parity.{case}", "name": name, "time": "0.000"})
    _child(element, "skipped", why)
    return element


def counts(testcases: Sequence[ET.Element]) -> dict[str, int]:
    """tests, failures, errors and skipped, as JUnit counts them (one outcome per testcase)."""

    def having(tag: str) -> int:
        return sum(case.find(tag) is not None for case in testcases)

    return {
        "tests": len(testcases),
        "failures": having("failure"),
        "errors": having("error"),
        "skipped": having("skipped"),
    }


def document(name: str, testcases: Iterable[ET.Element]) -> str:
    """The JUnit XML text: <testsuites> holding one <testsuite> of `testcases`."""
    cases = list(testcases)
    found = {key: str(value) for key, value in counts(cases).items()}
    seconds = f"{sum(float(case.get('time') or 0) for case in cases):.3f}"
    root = ET.Element("testsuites", {"name": name, **found, "time": seconds})
    suite = ET.SubElement(root, "testsuite", {"name": name, **found, "time": seconds})
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def check(path: Path) -> None:
    """ParityError unless a JUnit file can be written at `path`: not a directory or other non-file,
    and the directory that holds it exists or can be created and is writable."""
    path = Path(path)
    if path.is_dir():
        raise ParityError(f"--junit {path} is a directory, not a file")
    if path.exists() and not path.is_file():
        raise ParityError(f"--junit {path} is not a regular file")
    parent = path.absolute().parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ParityError(f"--junit {path}: {existing} is not a directory")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError:
        raise ParityError(f"--junit {path}: {existing} is not writable") from None


def write(path: Path, name: str, testcases: Iterable[ET.Element]) -> None:
    """The JUnit file, atomically; ParityError (one line) when it cannot be written."""
    try:
        write_atomic(Path(path), document(name, testcases))
    except OSError as exc:
        raise ParityError(f"cannot write the JUnit file {path}: {exc}") from None
