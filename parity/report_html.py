"""report.html: one self-contained page per report directory, for a person to look at.

Built from what the directory already holds: report.json read back through `parity.load_report` (the
checks as a DataFrame, the run-level fields in its attrs) and the decoded frames' PNGs. Every image is
inline (data: URIs), the CSS too, and nothing is fetched: the page opens the same from a CI artifact,
an e-mail or a machine without network. Every text from the report is escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from parity import cases, plots, sensitivity_cache
from parity.errors import ParityError
from parity.files import write_atomic
from parity.report import one_minus, run_parameters, stage_summary
from parity.reports import load_report
from parity.sensitivity_table import SHORT_DTYPES, Finding, method, size

NAME = "report.html"
_FRAME_PX = 320  # an image's frames and heatmap are shown this wide (CSS img.px; a video's 240): small ones pixelated
_KEY = ("stage", "tensor", "step", "block")  # a check's place, as report.json's first_divergence gives it
_DIFF = "|port − reference|"
_EMBED_AS_IS = 512 * 1024  # parity's own PNGs are stored, not deflated: larger ones are deflated first

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1320px;
  padding: 0 20px; color: #1d1d1f; }
h1 { margin: 0; font-size: 26px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.verdict { padding: 14px 18px; border-radius: 8px; color: #fff; }
.verdict.pass { background: #1e7d34; } .verdict.fail { background: #b3261e; } .verdict.error { background: #9a5b00; }
.verdict.sensitivity { background: #2f4f7f; }
.verdict p { margin: 4px 0 0; }
.divergence { margin: 12px 0; padding: 10px 14px; background: #fdf0ef; border-left: 4px solid #b3261e; }
.hint { margin: 8px 0; padding: 8px 14px; background: #fff8e1; border-left: 4px solid #e0a800; }
.note { color: #555; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fdecea; } tr.weak td { background: #fff8e1; }
dl.params { display: grid; grid-template-columns: max-content 1fr max-content 1fr; margin: 6px 0; }
dl.params dt, dl.params dd { margin: 0; padding: 3px 8px; border-bottom: 1px solid #eee; }
dl.params dt { font-weight: 600; background: #f4f4f6; }
code { font: 12.5px ui-monospace, Menlo, Consolas, monospace; }
.frames td, .frames th { text-align: center; border: none; padding: 4px 8px; background: none; }
.ok { color: #1e7d34; } .bad { color: #b3261e; font-weight: 600; }
img.px { width: 320px; image-rendering: pixelated; display: block; }
.strip img.px { width: 240px; } .frames td.legend { text-align: left; }
img.plot { max-width: 100%; display: block; }
.scale { width: 320px; margin: 6px 0 0; font-size: 12px; text-align: left; }
.scale .bar { height: 14px; border: 1px solid #999; }
.scale .ticks { display: flex; justify-content: space-between; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
#checks table { font-size: 12.5px; width: 100%; } #checks td { white-space: nowrap; }
#checks td:nth-last-child(2), #checks td:last-child { white-space: normal; }
#checks td:last-child { overflow-wrap: anywhere; min-width: 12em; }
#checks th, #checks td { padding: 2px 5px; } .scroll { overflow-x: auto; }
"""

# Marks <body>, once the page has loaded, with the number of images, of those that did not load
# (naturalWidth 0) and of resources the browser fetched (data: URIs are none): a self-check that a
# headless browser's DOM dump shows (tests/test_report_html_browser.py).
_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, broken = 0;
  for (var i = 0; i < images.length; i++) { if (!images[i].complete || images[i].naturalWidth === 0) broken++; }
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken-images", String(broken));
  document.body.setAttribute("data-fetched", String(performance.getEntriesByType("resource").length));
});
"""


def e(value: Any) -> str:
    """Text for HTML, escaped (quotes too: the same text may land in an attribute)."""
    return html.escape(str(value), quote=True)


def num(value: Any) -> str:
    """A number as report.md writes it (3 significant digits); '' for what is absent (None, <NA>, NaN)."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _where(where: dict[str, Any]) -> str:
    text = f"{where.get('stage')}/{where.get('tensor')}"
    text += f" step {where['step']}" if where.get("step") is not None else ""
    return text + (f" block {where['block']}" if where.get("block") is not None else "")


def _table(
    head: list[str] | None, rows: list[list[str]], numeric: frozenset[int] = frozenset(), marks: list[str] | None = None
) -> str:
    """A table of already escaped cells (`head` None: rows of name, value); `numeric` columns
    right-aligned; `marks` a class per row."""
    out = ['<table class="kv">'] if head is None else ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for index, row in enumerate(rows):
        css = f' class="{marks[index]}"' if marks and marks[index] else ""
        tags = ["th" if head is None and i == 0 else "td" for i in range(len(row))]
        cells = "".join(
            f'<{t} class="num">{c}</{t}>' if i in numeric else f"<{t}>{c}</{t}>"
            for i, (t, c) in enumerate(zip(tags, row, strict=True))
        )
        out.append(f"<tr{css}>{cells}</tr>")
    return "\n".join(out) + "</table>"


# --- sections, top to bottom ------------------------------------------------------------------------


def _head(attrs: dict[str, Any], frame: pd.DataFrame) -> str:
    verdict = str(attrs.get("verdict", "error"))
    case = attrs.get("case") or {}
    passed, total = int(frame["passed"].sum()), len(frame)
    out = [
        f'<header id="verdict" class="verdict {e(verdict)}"><h1>{e(verdict.upper())}</h1>',
        f"<p>{e(case.get('name', '?'))} · {e(attrs.get('mode', 'full'))} mode · {passed} of {total} checks passed</p>",
        "</header>",
    ]
    first = attrs.get("first_divergence")
    if first:
        out.append(
            f'<div class="divergence" id="first-divergence"><b>First divergence:</b> <code>{e(_where(first))}</code>'
        )
        cause = _cause_row(frame, first)
        if cause is not None:
            out.append(f"<br>{e(cause['message'])} <span class='note'>(tolerance: {e(cause['tolerance'])})</span>")
        out.append("</div>")
    for hint in attrs.get("hints") or []:
        out.append(
            f'<div class="hint"><b>Hint</b> ({e(hint.get("at", ""))}): {e(hint.get("symptom", ""))}. '
            f"<b>Likely cause:</b> {e(hint.get('likely_cause', ''))}.</div>"
        )
    causes = attrs.get("causes") or []
    if len(causes) > 1:
        out.append("<p>Independent causes: " + "; ".join(f"<code>{e(_where(c))}</code>" for c in causes) + "</p>")
    if attrs.get("decided_by"):
        decided = f"<b>{e(attrs['decided_by'])}</b>"
        out.append(f"<p>The verdict comes from {decided} (the full comparison with the reference passes).</p>")
    if attrs.get("error"):
        out.append(f'<p class="divergence"><b>Error:</b> {e(attrs["error"])}</p>')
    out += [f'<p class="note">Note: {e(note)}</p>' for note in attrs.get("notes") or []]
    return "\n".join(out)


def _cause_row(frame: pd.DataFrame, where: dict[str, Any]) -> dict[str, Any] | None:
    for row in frame[~frame["passed"]].to_dict("records"):
        step = None if num(row["step"]) == "" else int(row["step"])
        if (row["stage"], row["tensor"], step, row["block"]) == tuple(where.get(k) for k in _KEY):
            return row
    return None


def _parameters(attrs: dict[str, Any]) -> str:
    rows = [[e(name), ", ".join(f"<code>{e(v)}</code>" if literal else e(v) for v in values)]
            for name, values, literal in run_parameters(attrs)]  # fmt: skip
    pipes = attrs.get("pipelines") or {}
    rows += [[e(side), f"<code>{e(pipes[side])}</code>"] for side in ("reference", "port") if pipes.get(side)]
    ops = attrs.get("port_ops") or {}
    if ops.get("summary"):
        rows.append(["port ops ran", e(ops["summary"])])
    capture = attrs.get("capture") or {}
    if capture:
        rows.append(["block capture", e(f"{capture.get('block_policy')}; steps {capture.get('block_steps')}")])
    pairs = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f'<section id="parameters"><h2>Run</h2><dl class="params">{pairs}</dl></section>'


def _frames(attrs: dict[str, Any], directory: Path) -> str:
    """Reference and port side by side with |port - reference| amplified, on one colour scale; a video's
    sampled frames as a strip (one row per side)."""
    out = ['<section id="frames"><h2>Decoded frames</h2>']
    noise = attrs.get("noise") or {}
    if noise:
        rows = [
            f"frame {r['frame']}: SSIM {num(r['ssim'])}, PSNR {num(r['psnr_db'])} dB, mean abs "
            f"{num(r['mean_abs_u8'])}/255"
            for r in noise.get("relative") or []
        ]
        out.append(f"<p>Noise check: <b>{e(noise.get('verdict'))}</b>. {e('; '.join(rows))}</p>")
    pairs = [
        (name, "port" + name[len("reference") :])
        for name in attrs.get("frames_png") or []
        if name.startswith("reference") and (directory / name).is_file()
    ]
    pairs = [(ref, port) for ref, port in pairs if (directory / port).is_file()]
    if not pairs:
        return "\n".join(out) + '<p class="note">No decoded frames in this report directory.</p></section>'
    files = {name: (directory / name).read_bytes() for pair in pairs for name in pair}
    pixels = [(plots.read_png(files[ref]), plots.read_png(files[port])) for ref, port in pairs]
    diffs = [plots.difference(r, p) if r.shape == p.shape else None for r, p in pixels]
    largest = max((int(d.max()) for d in diffs if d is not None), default=0)
    scale = max(1, largest)  # the heatmap's top colour: the largest difference, amplified to full scale
    cells: dict[str, list[str]] = {"reference": [], "port": [], _DIFF: []}
    for (ref, port), (r, p), diff in zip(pairs, pixels, diffs, strict=True):
        cells["reference"].append(_img(files[ref], r, "frame reference", f"reference {ref}"))
        cells["port"].append(_img(files[port], p, "frame port", f"port {port}"))
        heat = None if diff is None else _img(plots.heatmap(diff, scale), diff, "heatmap", "difference")
        cells[_DIFF].append(heat or "<i>the two frames differ in size</i>")
    legend = _colour_scale(scale)
    if len(pairs) == 1:  # an image: one row, the colour scale under the heatmap
        head = "".join(f"<th>{e(side)}</th>" for side in cells)
        row = "".join(f"<td>{c[0]}</td>" for c in list(cells.values())[:2]) + f"<td>{cells[_DIFF][0]}{legend}</td>"
        out.append(f'<table class="frames"><tr>{head}</tr><tr>{row}</tr></table>')
    else:  # a video: a strip per side, the scale under the heatmaps
        out.append('<table class="frames strip"><tr><th></th>')
        out.append("".join(f"<th>{e(_frame_label(r))}</th>" for r, _ in pairs) + "</tr>")
        out += [
            f"<tr><th>{e(side)}</th>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for side, row in cells.items()
        ]
        out.append(f'<tr><th></th><td colspan="{len(pairs)}" class="legend">{legend}</td></tr></table>')
    same = "identical at 8 bits" if largest == 0 else f"largest difference {largest}/255"
    out.append(f'<p class="note">{e(same)}.</p></section>')
    return "\n".join(out)


def _colour_scale(scale: int) -> str:
    """The heatmap's legend: the colour map as a CSS gradient, ticks in whole 8-bit levels."""
    gradient = ", ".join(plots.scale_colours())
    ticks = "".join(f"<span>{v}</span>" for v in sorted({0, scale // 2, scale}))
    return (
        f'<div class="scale" id="colour-scale"><div class="bar" style="background: linear-gradient(to right, '
        f'{gradient})"></div><div class="ticks">{ticks}</div>|port − reference| in 8-bit levels (of 255), the '
        f"largest over R, G, B; amplified ×{255 / scale:.3g}</div>"
    )


def _frame_label(name: str) -> str:
    stem = Path(name).stem
    return stem.replace("reference_frame", "frame ") if "_frame" in stem else "image"


def _img(png: bytes, pixels: Any, css: str, alt: str) -> str:
    """An inline frame image; a large one deflated first, and smoothed rather than pixelated when shrunk."""
    data = png if len(png) <= _EMBED_AS_IS else plots.png(pixels)
    style = "" if pixels.shape[1] < _FRAME_PX else ' style="image-rendering: auto"'
    return f'<img class="px {css}" alt="{e(alt)}" src="{data_uri(data)}"{style}>'


def _stages(frame: pd.DataFrame) -> str:
    summary = stage_summary(frame.to_dict("records"))
    rows = [[e(s.stage), str(s.checks), str(s.failed), num(s.worst_rel_l2), e(s.at), e(s.tolerance)] for s in summary]
    marks = ["failed" if s.failed else "" for s in summary]
    table = _table(
        ["stage", "checks", "failed", "worst rel L2", "at", "its tolerance"], rows, frozenset({1, 2, 3}), marks
    )
    return f'<section id="stages"><h2>Stages</h2>{table}</section>'


def _plots(frame: pd.DataFrame) -> str:
    out = ['<section id="plots">']
    for key, title, draw, missing in (
        ("blocks", "Error along the blocks", plots.blocks_png, "No block outputs were captured (--block-steps none)."),
        ("steps", "Error along the steps", plots.steps_png, "No denoising step was compared."),
    ):
        png = draw(frame)
        out.append(f"<h2>{title}</h2>")
        out.append(
            f'<p class="note">{e(missing)}</p>' if png is None
            else f'<img class="plot" id="plot-{key}" alt="{e(title)}" src="{data_uri(png)}">'
        )  # fmt: skip
    return "\n".join(out) + "</section>"


def _isolated(attrs: dict[str, Any]) -> str:
    isolated = attrs.get("isolated")
    if not isolated or not isolated.get("components"):
        return ""
    rows, marks = [], []
    for row in isolated["components"]:
        rows.append(
            [_mark(row["passed"]), e(row["component"]), f"{row['checks'] - row['failed']}/{row['checks']}"]
            + [num(_float(row.get(k))) for k in ("max_abs", "rel_l2")]
            + [one_minus(_float(row.get("cosine"))), num(_float(row.get("sqnr_db")))]
        )
        marks.append("" if row["passed"] else "failed")
    table = _table(
        ["", "component", "checks", "max abs", "rel L2", "1 − cos", "SQNR dB"], rows, frozenset({2, 3, 4, 5, 6}), marks
    )
    title = f"Isolated components (teacher-forced on the reference's inputs): {e(isolated.get('verdict'))}"
    return f'<section id="isolated"><h2>{title}</h2>{table}</section>'


def _mark(passed: bool, role: str = "") -> str:
    """✓ / ✗ (and a failure's role): characters every text font has, unlike the emoji report.md uses."""
    return '<span class="ok">✓</span>' if passed else f'<span class="bad">{" ".join(["✗", e(role)]).strip()}</span>'


def _float(value: Any) -> float | None:
    """report.json's numbers: "inf" strings back to floats, null absent."""
    return None if value is None else float(value)


def _replay_section(ident: str, title: str, found: dict | None, body: Callable[[dict], list[str]]) -> str:
    """A float64 replay's section (the referee's, the audit's): nothing when the run made none, its reason
    when it was skipped, else `body`'s paragraphs and tables."""
    if not found:
        return ""
    inner = [f"<p>Skipped: {e(found['skipped'])}</p>"] if found.get("skipped") else body(found)
    return "\n".join([f'<section id="{ident}"><h2>{title}</h2>', *inner]) + "</section>"


def _referee(attrs: dict[str, Any]) -> str:
    return _replay_section("referee", "fp64 referee", attrs.get("referee"), _judgement)


def _judgement(judged: dict) -> list[str]:
    verdict = "numerically equivalent" if judged.get("equivalent") else "not equivalent: a logic difference"
    rows = [
        ["reference error: rel_l2(ref, ref_fp64)", num(_float(judged.get("reference_error")))],
        ["port error: rel_l2(port, ref_fp64)", num(_float(judged.get("port_error")))],
        ["rel_l2(port_fp64, ref_fp64)", num(_float(judged.get("port_fp64_vs_reference_fp64")))],
        ["closer to ref_fp64", e(judged.get("closer", ""))],
    ]
    return [
        f"<p><b>{e(verdict)}</b> at <code>{e(_where({'stage': 'denoising', **judged}))}</code>.</p>",
        _table(None, rows, frozenset({1})),
        f'<p class="note">Rule: {e(judged.get("rule", ""))}</p>',
    ]


def _audit(attrs: dict[str, Any]) -> str:
    return _replay_section("audit", "float64 audit", attrs.get("audit"), _audited)


def _audited(section: dict) -> list[str]:
    """`--audit fp64`: its rule and verdict, then each component kind's largest float64 difference and floor
    (the audit checks themselves are rows of the checks table, stage `audit`)."""
    out = []
    flagged = section.get("flagged") or []
    head = f"{len(flagged)} of {section.get('components', 0)} components flagged" if flagged else "no component flagged"
    out.append(f"<p><b>{e(head)}</b> (step {e(str(section.get('step', 0)))}, the port on the reference's inputs).</p>")
    if flagged:
        out.append("<ul>" + "".join(f"<li><code>{e(f)}</code></li>" for f in flagged) + "</ul>")
    rows = [
        [
            e(kind),
            num(_float(found.get("rel_l2"))),
            num(_float(found.get("floor"))),
            f"<code>{e(found.get('at', ''))}</code>",
        ]
        for kind, found in (section.get("largest_by_kind") or {}).items()
    ]
    out.append(_table(["component kind", "largest rel L2", "its floor", "at"], rows, frozenset({1, 2})))
    out.append(
        f'<p class="note">Rule: {e(section.get("rule", ""))}. Not audited: {e(section.get("not_audited", ""))}. '
        f"{e(str(section.get('seconds')))} s for the audit's runs.</p>"
    )
    return out


def _checks(frame: pd.DataFrame) -> str:
    head = ["", "stage", "tensor", "step", "block", "status", "max abs", "rel L2", "1 − cos", "SQNR dB", "tolerance"]
    head.append("message")
    rows, marks = [], []
    for row in frame.to_dict("records"):
        mark = _mark(row["passed"], str(row.get("role") or "downstream"))
        cells = [mark, e(row["stage"]), e(row["tensor"]), num(row["step"]), e(num(row["block"])), e(row["status"])]
        cells += [
            num(row.get("max_abs")),
            num(row.get("rel_l2")),
            one_minus(row.get("cosine")),
            num(row.get("sqnr_db")),
        ]
        cells += [e(num(row.get("tolerance"))), e(num(row.get("message")))]
        rows.append(cells)
        marks.append("" if row["passed"] else "failed")
    failing = len(frame) - int(frame["passed"].sum())
    table = _table(head, rows, frozenset({3, 6, 7, 8, 9}), marks)
    summary = f"<summary>All {len(frame)} checks ({failing} failing)</summary>"
    return (
        f'<section id="checks"><h2>Checks</h2><details>{summary}<div class="scroll">{table}</div></details></section>'
    )


# --- sensitivity: the tables of `parity sensitivity` ----------------------------------------------------

_FINDINGS = {
    Finding.BLIND: "blind",  # with the largest size probed, below
    Finding.FAILS_UNPERTURBED: "fails unperturbed (not probed)",
    Finding.NOT_RECORDED: "not recorded by the port",
    Finding.NOT_INJECTABLE: "not injectable (shapes differ)",
}


def _yes_no(value: Any) -> str:
    return "–" if value is None else "yes" if value else "no"


def _sensitivity_table(section: dict[str, Any]) -> str:
    """report.json's `sensitivity.rows` as a table: one row per perturbed tensor, the smallest relative size
    detected and whether that detection is localized; the rows where the verdict is weak (blind, not probed,
    not localized) marked."""
    rows, marks = [], []
    for row in section.get("rows") or []:
        finding = row.get("finding")
        if finding == Finding.DETECTED:
            detected = size(_float(row.get("smallest_detected")))
        elif finding == Finding.BLIND:
            detected = f"blind at {size(_float(section.get('high')))}"
        else:
            detected = _FINDINGS.get(finding, str(finding))
        step = row.get("step")
        cells = [e(row.get("stage")), e(row.get("tensor")), "" if step is None else e(step), e(row.get("block") or "")]
        cells += [e(detected), e(size(_float(row.get("largest_missed")))), e(_yes_no(row.get("localized")))]
        cells += [
            e(row.get("first_new_failure") or "–"),
            e(_yes_no(row.get("fed_to_port"))),
            str(len(row.get("probes") or [])),
        ]
        rows.append(cells)
        marks.append("" if finding == Finding.DETECTED and row.get("localized") else "weak")
    head = ["stage", "tensor", "step", "block", "smallest detected", "largest missed", "localized"]
    head += ["first new failure", "fed to the port", "probes"]
    table = _table(head, rows, frozenset({2, 4, 5, 9}), marks)
    legend = (
        "Sizes are relative L2 (‖δ‖ / ‖tensor‖). Smallest detected: the smallest perturbation for which a check fails "
        "that the unperturbed run passes; largest missed: the largest size probed below it and not detected; "
        "localized: the first such failure names the perturbed tensor. Highlighted: where the verdict is weak "
        "(blind, not probed, or first seen elsewhere)."
    )
    return f'{table}<p class="note">{e(legend)}</p>'


def _made(kept: sensitivity_cache.Kept) -> str:
    """When a kept table was made: its `created` (UTC), else its report.json's file time."""
    created = kept.doc.get("created")
    if created:
        return f"{created} UTC" if not str(created).endswith(("Z", "+00:00")) else str(created)
    stamp = datetime.fromtimestamp(kept.path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return f"{stamp} (file time)"


def _kept_versions(kept: sensitivity_cache.Kept) -> str:
    section = kept.doc["sensitivity"]
    recorded = (section.get("key_inputs") or {}).get("versions")
    return str(recorded) if recorded else ", ".join(f"{k} {v}" for k, v in (kept.doc.get("versions") or {}).items())


def _differ(kept: sensitivity_cache.Kept) -> str:
    """What of a stale table's key inputs changed: "changed: versions", "changed: tolerances, method"."""
    return "changed: " + (", ".join(kept.differing) or "its key")


def _recorded_case(attrs: dict[str, Any]) -> cases.Case | None:
    """The run's case as report.json records it (keys this parity does not know left out); None without one."""
    recorded = attrs.get("case")
    if not isinstance(recorded, dict) or not recorded.get("name"):
        return None
    known = {f.name for f in dataclasses.fields(cases.Case)}
    return cases.Case(**{k: v for k, v in recorded.items() if k in known})


def _kept_tables(case: cases.Case, root: Path) -> list[sensitivity_cache.Kept | None]:
    """The table kept for the case in each dtype (None: none), the run's dtype first."""
    dtypes = [case.dtype] + [d for d in cases.DTYPES if d != case.dtype]
    case_file = cases.cases_dir() / f"{case.name}.toml"  # a bundled case's file, as the suite's summary reads it
    return [sensitivity_cache.kept(dataclasses.replace(case, dtype=d), root, case_file) for d in dtypes]


def _sensitivity_of_run(attrs: dict[str, Any], root: Path) -> str:
    """What the run's verdict can see: the table `parity sensitivity` keeps for its case and dtype (and the
    summary line of the other dtype's), read back, with where it came from, when and for which versions;
    marked stale when its key does not hold for this run. Nothing is measured here."""
    case = _recorded_case(attrs)
    if case is None:
        return ""
    out = ['<section id="sensitivity"><h2>What this verdict can see (kept sensitivity table)</h2>']
    try:
        tables = _kept_tables(case, root)
    except Exception as exc:  # an optional section: a fault reading the kept tables must not cost the page
        out.append(
            f'<p class="note">The kept sensitivity tables could not be read: {e(type(exc).__name__)}: {e(exc)}</p>'
        )
        return "\n".join(out) + "</section>"
    command = f"parity sensitivity {case.name} --dtype {case.dtype}"
    own = tables[0]
    if own is None:
        where = sensitivity_cache.out_dir(case, root)
        out.append(
            f'<p class="note">No sensitivity table is kept for {e(case.name)} in {e(case.dtype)} '
            f"(<code>{e(where)}</code>): <code>{e(command)}</code> measures the smallest error this verdict detects "
            "in each stage.</p>"
        )
    else:
        fresh = "its key (the case, its case file, the fixture's build, the versions, the tolerances, the method) "
        fresh += "holds for this run"
        out.append(
            f"<p>From <code>{e(own.path)}</code>, made {e(_made(own))} by <code>parity sensitivity</code> with "
            f"{e(_kept_versions(own))}: measured teacher-forced (isolated mode), one perturbation at a time, and "
            f"not re-run for this page; {e(fresh) if own.current else 'its key does not hold for this run'}.</p>"
        )
        if not own.current:
            differ = e(_differ(own))
            out.append(
                f'<div class="hint"><b>Stale:</b> made for other inputs than this run\'s ({differ}), so it may '
                f"not hold here. <code>{e(command)}</code> measures it again.</div>"
            )
    lines = [
        f"<li><b>{e(kept.summary)}</b>" + ("" if kept.current else f" <i>(stale: {e(_differ(kept))})</i>") + "</li>"
        for kept in tables
        if kept is not None
    ]
    if lines:
        out.append(f'<ul id="sensitivity-summary">{"".join(lines)}</ul>')
    if own is not None:
        out.append(_sensitivity_table(own.doc["sensitivity"]))
    return "\n".join(out) + "</section>"


def _page(title: str, body: list[str], verdict: str = "") -> str:
    """The page around its sections: the CSS, the load self-check, nothing to fetch."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>\n'
        f"<style>{_CSS}</style></head>\n"
        f'<body data-verdict="{e(verdict)}">\n'
        + "\n".join(b for b in body if b)
        + f"\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def render(directory: str | Path, sensitivity_root: str | Path = sensitivity_cache.ROOT) -> str:
    """report.html's text for a report directory (its report.json and frame PNGs); `sensitivity_root` is
    where `parity sensitivity` keeps its tables (the one kept for the run's case is shown, not re-run)."""
    directory = Path(directory)
    frame = load_report(directory)
    attrs = dict(frame.attrs)
    case, versions = attrs.get("case") or {}, attrs.get("versions") or {}
    title = f"parity: {case.get('name', '?')} — {str(attrs.get('verdict', '?')).upper()}"
    body = [
        _head(attrs, frame),
        _parameters(attrs),
        _frames(attrs, directory),
        _stages(frame),
        _plots(frame),
        _isolated(attrs),
        _referee(attrs),
        _audit(attrs),
        _sensitivity_of_run(attrs, Path(sensitivity_root)),
        _checks(frame),
        f'<p class="note">parity {e(versions.get("parity", ""))} · report.json beside this file.</p>',
    ]
    return _page(title, body, str(attrs.get("verdict", "")))


def render_sensitivity(directory: str | Path) -> str:
    """report.html's text for a table of `parity sensitivity` (its directory's report.json, `kind: sensitivity`)."""
    directory = Path(directory)
    doc = sensitivity_cache.read(directory)
    if doc is None:
        raise ParityError(f"{directory / 'report.json'} is not a table of `parity sensitivity`")
    section, case = doc["sensitivity"], doc.get("case") or {}
    dtype = str(case.get("dtype", "?"))
    rows = section.get("rows") or []
    head = [
        '<header id="head" class="verdict sensitivity"><h1>SENSITIVITY</h1>',
        f"<p>{e(case.get('name', '?'))} · {e(SHORT_DTYPES.get(dtype, dtype))} · {e(case.get('device', '?'))} · "
        f"isolated mode · {len(rows)} tensor{'' if len(rows) == 1 else 's'} probed in "
        f"{e(section.get('port_runs', '?'))} port runs</p>",
        f'<p id="sensitivity-summary"><b>{e(section.get("summary", ""))}</b></p></header>',
    ]
    failing = (section.get("unperturbed") or {}).get("failing") or []
    table = [
        '<section id="sensitivity"><h2>Smallest error detected, per tensor</h2>',
        f'<p class="note">{e(method(section))}</p>',
        _sensitivity_table(section),
    ]
    if failing:
        table.append("<p>Failing unperturbed: " + ", ".join(f"<code>{e(f)}</code>" for f in failing) + "</p>")
    key = [[e("key"), f"<code>{e(section.get('key', ''))}</code>"]]
    key += [[e(name), e(value)] for name, value in (section.get("key_inputs") or {}).items()]
    made = doc.get("created")
    kept = [
        '<section id="sensitivity-key"><h2>Kept under a key</h2>',
        "<p><code>parity sensitivity</code> shows this table again, with no pipeline run, while these hold"
        + (f"; made {e(made)}" if made else "")
        + ".</p>",
        _table(None, key),
        "</section>",
    ]
    versions = doc.get("versions") or {}
    body = [
        "\n".join(head),
        _parameters({**doc, "timings_s": section.get("seconds") or {}}),
        "\n".join(table) + "</section>",
        "\n".join(kept),
        f'<p class="note">parity {e(versions.get("parity", ""))} · report.json and report.md beside this file.</p>',
    ]
    return _page(f"parity sensitivity: {case.get('name', '?')} ({dtype})", body)


def write(directory: str | Path) -> Path:
    """Render report.html into the report directory, atomically; returns its path."""
    path = Path(directory) / NAME
    write_atomic(path, render(directory))
    return path


def write_sensitivity(directory: str | Path) -> Path:
    """Render report.html into a directory of `parity sensitivity`, atomically; returns its path."""
    path = Path(directory) / NAME
    write_atomic(path, render_sensitivity(directory))
    return path
