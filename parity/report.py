"""Write a RunReport as report.json, report.md, checks.csv and report.html, each atomically (parity.files)."""

from __future__ import annotations

import io
import json
import math
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from parity import audit, progress
from parity.files import json_safe, write_atomic
from parity.results import RunReport

HTML_TRACEBACK = "report-html-traceback.txt"  # beside the report when report.html could not be rendered


def checks_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3g}"
    return str(value)


def markdown(doc: dict[str, Any]) -> str:
    """report.md: the verdict and its hints first, the run's parameters, the Req contract, a summary per
    stage, then every check, the causes, the decoded frames, the isolated components and the notes."""
    out = io.StringIO()
    sections = (_md_head, _md_parameters, _md_contract, _md_audit, _md_stages, _md_checks, _md_causes, _md_frames)
    for section in (*sections, _md_isolated, _md_parallel, _md_notes):
        section(doc, out)
    return out.getvalue()


def _md_contract(doc: dict[str, Any], out: io.StringIO) -> None:
    """One line on the port's Req contract: where it was observed, its checks, and each warning (a rule of
    SGLang's skill that the pinned SGLang code does not follow, so the harness does not hold it)."""
    section = doc.get("contract")
    if not section:
        return
    rows = [r for r in doc["checks"] if r["stage"] == "contract"]
    failed = [r["tensor"] for r in rows if not r["passed"]]
    held = f"{len(rows) - len(failed)} of {len(rows)} checks hold"
    held += f" (failed: {', '.join(failed)})" if failed else ""
    warned = "".join(f" ⚠ {w}." for w in section.get("warnings") or [])
    out.write(f"Req contract (observed entering `{section.get('denoiser')}`): {held}.{warned}\n\n")


def _md_audit(doc: dict[str, Any], out: io.StringIO) -> None:
    """One line on `--audit fp64` (parity.audit), when it was asked for."""
    if doc.get("audit"):
        out.write(audit.describe(doc["audit"]) + ".\n\n")


def run_parameters(doc: Mapping[str, Any]) -> list[tuple[str, list[str], bool]]:
    """What was run, as (name, values, literal): the case's own settings, the plugins, the libraries'
    versions, the time taken. report.md's "Run:" line and report.html's table both show this list;
    `literal` values are names and paths (code in Markdown)."""
    case = doc.get("case") or {}
    names = ["model_dir", "fixture", "model_id", "revision", "prompt", "seed", "height", "width", "num_frames"]
    names += ["steps", "dtype", "device", "port_ops", "port_parallel"]
    found = [(k, [str(case[k])], True) for k in names if case.get(k) not in (None, "")]
    if doc.get("plugins"):
        found.append(("plugins", [str(p) for p in doc["plugins"]], True))
    versions = doc.get("versions") or {}
    if versions:
        found.append(("versions", [f"{k} {v}" for k, v in versions.items()], False))
    timings = doc.get("timings_s") or {}
    if timings:
        found.append(("seconds", [f"{k} {_fmt(float(v))}" for k, v in timings.items()], False))
    return found


def _md_parameters(doc: dict[str, Any], out: io.StringIO) -> None:
    shown = [
        name + " " + ", ".join(f"`{v}`" if literal else v for v in values)
        for name, values, literal in run_parameters(doc)
    ]
    if shown:
        out.write("Run: " + " · ".join(shown) + "\n\n")


@dataclass(frozen=True)
class StageSummary:
    """One canonical stage's checks: how many, how many failed, and the worst relative L2 error
    (None where no check of the stage has one) with where it is and that check's tolerance."""

    stage: str
    checks: int
    failed: int
    worst_rel_l2: float | None
    at: str
    tolerance: str


def stage_summary(rows: Iterable[Mapping[str, Any]]) -> list[StageSummary]:
    """Per stage, in the order the rows first name it: report.json's check rows (null where absent,
    "inf" for infinity) or `load_report`'s records (NaN / <NA> there). Shared by report.md and report.html."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(str(row["stage"]), []).append(row)
    found = []
    for stage, members in grouped.items():
        measured = [r for r in members if _given(r.get("rel_l2"))]  # "inf" as report.json writes it counts
        worst = max(measured, key=lambda r: float(r["rel_l2"]), default=None)
        at = "" if worst is None else " ".join(str(worst[k]) for k in ("tensor", "step", "block") if _given(worst[k]))
        found.append(
            StageSummary(
                stage,
                len(members),
                sum(not bool(r["passed"]) for r in members),
                None if worst is None else float(worst["rel_l2"]),
                at,
                "" if worst is None else str(worst.get("tolerance") or ""),
            )
        )
    return found


def _given(value: Any) -> bool:
    """Not absent: None (report.json's null), pandas' <NA> or a float NaN (load_report's) are."""
    return value is not None and value is not pd.NA and not (isinstance(value, float) and math.isnan(value))


def _md_stages(doc: dict[str, Any], out: io.StringIO) -> None:
    """Per canonical stage: checks passed, failed, and its worst relative L2 error with that check's limit."""
    summary = stage_summary(doc["checks"])
    if not summary:
        return
    out.write("| stage | checks | failed | worst rel L2 | at | its tolerance |\n|---|---|---|---|---|---|\n")
    for row in summary:
        cells = [row.stage, str(row.checks), str(row.failed)]
        if row.worst_rel_l2 is None:
            cells += ["", "", ""]
        else:
            cells += [_fmt(row.worst_rel_l2), row.at, row.tolerance]
        out.write("| " + " | ".join(cells) + " |\n")
    out.write("\n")


def _md_head(doc: dict[str, Any], out: io.StringIO) -> None:
    case = doc.get("case", {})
    out.write(f"# Parity report: {case.get('name', '?')} ({doc.get('mode', 'full')} mode)\n\n")
    out.write(f"**Verdict: {doc['verdict'].upper()}**")
    fd = doc.get("first_divergence")
    if fd:
        where = ", ".join(f"{k}={v}" for k, v in fd.items() if v is not None)
        out.write(f" — first divergence: {where}")
    out.write("\n\n")
    if doc.get("decided_by") == "isolated":
        out.write(
            "The verdict comes from the isolated run (the full run passes): its checks are under "
            '"Isolated components" below.\n\n'
        )
    elif doc.get("decided_by"):
        out.write(
            f"The verdict comes from {doc['decided_by']} (the comparison with the reference passes): see "
            '"Port ranks" below.\n\n'
        )
    if doc.get("error"):
        out.write(f"Error: {doc['error']}\n\n")
    for hint in doc.get("hints") or []:
        out.write(f"> **Hint** ({hint['at']}): {hint['symptom']}. Likely cause: {hint['likely_cause']}.\n\n")
    causes = doc.get("causes") or []
    if len(causes) > 1:
        listed = "; ".join(", ".join(f"{k}={v}" for k, v in c.items() if v is not None) for c in causes)
        out.write(f"Independent causes: {listed}\n\n")
    capture = doc.get("capture")
    if capture:
        out.write(
            f"Block capture: {capture['block_policy']}; captured steps {capture['block_steps']} "
            f"({capture['block_branch']} branch).\n\n"
        )
    s = doc["summary"]
    out.write(f"{s['passed']} of {s['checks']} checks passed.\n\n")
    pipes = doc.get("pipelines", {})
    if pipes:
        out.write(
            f"Reference: `{pipes.get('reference')}` · Port: `{pipes.get('port')}`"
            f" · dtype {case.get('dtype')} · device {case.get('device')}\n\n"
        )
    ops = doc.get("port_ops") or {}
    if ops.get("summary"):  # native mode: every SGLang kernel that still ran, beside what was rerouted
        ran = ": no SGLang kernel ran" if ops["summary"] == "native" else " (SGLang kernels that still ran)"
        out.write(f"Port ops: {ops['summary']}{ran}; what was rerouted: report.json `port_ops.rerouted`.\n\n")


def _md_checks(doc: dict[str, Any], out: io.StringIO) -> None:
    out.write("| | stage | tensor | step | block | max abs | rel L2 | 1 − cos | SQNR dB | NaN/Inf ref / port ")
    out.write("| tolerance | min atol |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for row in doc["checks"]:
        mark = "✅" if row["passed"] else ("❌ cause" if row.get("role") == "cause" else "❌ downstream")
        cells = [mark, row["stage"], row["tensor"], _fmt(row["step"]), _fmt(row["block"])]
        cells += [_fmt(row.get("max_abs")), _fmt(row.get("rel_l2")), one_minus(row.get("cosine"))]
        cells += [_fmt(row.get("sqnr_db")), _nonfinite(row), row["tolerance"], _fmt(row["min_atol"])]
        out.write("| " + " | ".join(cells) + " |\n")


def one_minus(cosine: Any) -> str:
    """1 - cosine in scientific notation: a cosine of 0.99999 and of 1 both print as "1" otherwise."""
    if not isinstance(cosine, (int, float)) or math.isnan(cosine):
        return ""
    return f"{1.0 - cosine:.2e}"


def _nonfinite(row: dict) -> str:
    ref, port = row.get("reference_nonfinite"), row.get("port_nonfinite")
    return "" if ref is None and port is None else f"{ref or 0} / {port or 0}"


def _md_causes(doc: dict[str, Any], out: io.StringIO) -> None:
    failing = [r for r in doc["checks"] if not r["passed"] and r["message"] and r.get("role") == "cause"]
    if failing:
        out.write("\n## Causes\n\n")
        for row in failing:
            where = "".join(f" {k} {row[k]}" for k in ("step", "block") if row[k] is not None)
            out.write(f"- `{row['stage']}/{row['tensor']}`{where}: {row['message']}\n")


def _md_parallel(doc: dict[str, Any], out: io.StringIO) -> None:
    """--port-parallel: the ranks, the conclusion, and the two comparisons beside the main one."""
    section = doc.get("parallel")
    if not section:
        return
    degrees = ", ".join(f"{k}={v}" for k, v in section["degrees"].items() if k not in ("world_size", "sp") and v > 1)
    out.write(f"\n## Port ranks: {section['world_size']} ({degrees})\n\n{section['conclusion']}.\n\n")
    out.write("| comparison | verdict | first divergence | checks passed | worst block max abs | frames max abs |\n")
    out.write("|---|---|---|---|---|---|\n")
    for name, title in (
        ("vs_one_rank", "ranks vs the port at one rank"),
        ("rank_agreement", "rank vs rank (whole tensors)"),
    ):
        part = section[name]
        first = part["first_divergence"]
        where = ", ".join(f"{k}={v}" for k, v in first.items() if v is not None) if first else "–"
        summary = f"{part['summary']['passed']}/{part['summary']['checks']}"
        numbers = [_fmt(part["worst_block_max_abs"]), _fmt(part["frames_max_abs"])]
        out.write(f"| {title} | {part['verdict']} | {where} | {summary} | " + " | ".join(numbers) + " |\n")
    out.write("\n| rank | tp | sp | ulysses | ring | cfg | DiT parameters | SGLang's degrees |\n")
    out.write("|---|---|---|---|---|---|---|---|\n")
    for tags in section["ranks"]:
        cells = [_fmt(tags.get(k)) for k in ("rank", "tp", "sp", "ulysses", "ring", "cfg", "dit_parameters")]
        sglang = ", ".join(f"{k}={v}" for k, v in (tags.get("sglang") or {}).items())
        out.write("| " + " | ".join(cells) + f" | {sglang} |\n")
    out.write(
        f"\nThe DiT at one rank: {_fmt(section['one_rank_dit_parameters'])} parameters. "
        f"Records merged from sequence shards: {section['sharded_records']}.\n"
    )


def _md_frames(doc: dict[str, Any], out: io.StringIO) -> None:
    section = doc.get("noise")
    if not section:
        return
    out.write(f"\n## Decoded frames: {section['verdict']}\n\n")
    port, ref = section["port"][0], section["reference"][0]
    out.write(
        f"Noise score (0 natural, 1 noise; flagged above the calibrated threshold): port {_fmt(port['score'])} "
        f"({port['reason']}), reference {_fmt(ref['score'])} ({ref['reason']}).\n\n"
    )
    for row in section["relative"]:
        out.write(
            f"- frame {row['frame']}: SSIM {row['ssim']:.5f}, PSNR {_fmt(row['psnr_db'])} dB, "
            f"mean abs {row['mean_abs_u8']:.3g}/255\n"
        )
    if section.get("note"):
        out.write(f"\n{section['note']}\n")
    pngs = doc.get("frames_png") or []
    if pngs:
        out.write("\n" + " ".join(f"![{name}]({name})" for name in pngs) + "\n")


def _md_isolated(doc: dict[str, Any], out: io.StringIO) -> None:
    isolated = doc.get("isolated")
    if not isolated:
        return
    out.write(f"\n## Isolated components (teacher-forced on the reference's inputs): {isolated['verdict']}\n\n")
    out.write("| | component | checks | max abs | rel L2 | cosine | SQNR dB |\n")
    out.write("|---|---|---|---|---|---|---|\n")
    for row in isolated["components"]:
        passed = f"{row['checks'] - row['failed']}/{row['checks']}"
        cells = ["✅" if row["passed"] else "❌", row["component"], passed]
        cells += [_fmt(row[k]) for k in ("max_abs", "rel_l2", "cosine", "sqnr_db")]
        out.write("| " + " | ".join(cells) + " |\n")


def _md_notes(doc: dict[str, Any], out: io.StringIO) -> None:
    notes = doc.get("notes") or []
    if notes:
        out.write("\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes))


def to_json(doc: dict[str, Any]) -> str:
    """report.json's text: indented, except that each check is one line. Readable, diffable line
    by line, and encoded by json's C encoder (an indented dump of a few hundred checks takes the
    pure-Python one, several times slower)."""
    if "checks" not in doc:
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"
    head = json.dumps({key: value for key, value in doc.items() if key != "checks"}, indent=2, allow_nan=False)
    rows = ",\n".join("    " + json.dumps(row, allow_nan=False) for row in doc["checks"])
    checks = f'"checks": [\n{rows}\n  ]' if rows else '"checks": []'
    body = head[: -len("}")].rstrip()  # "{" alone, or "{ ...entries" without the closing brace
    return f"{body}{',' if body != '{' else ''}\n  {checks}\n}}\n"


def write(out_dir: Path, report: RunReport) -> dict:
    """report.json, report.md and checks.csv of one run; returns report.json's document."""
    doc = json_safe(report.as_json())
    out_dir = Path(out_dir)
    write_atomic(out_dir / "report.json", to_json(doc))
    write_atomic(out_dir / "report.md", markdown(doc))
    write_atomic(out_dir / "checks.csv", checks_table(report.main.rows()).to_csv(index=False))
    # Last: report.html reads report.json back through parity.load_report and the frames' PNGs. Imported
    # here because parity.report_html imports this module (the shared run parameters and stage summary).
    from parity import report_html

    try:
        report_html.write(out_dir)
    except Exception as exc:  # the page is for eyes: a fault in it must not cost the run its report
        write_atomic(out_dir / HTML_TRACEBACK, traceback.format_exc())
        progress.say(f"report.html not written ({type(exc).__name__}: {exc}): see {HTML_TRACEBACK}")
    return doc
