"""report.html on synthetic report directories (no pipeline): its sections in order, its images inline
and decodable, the difference heatmap amplified, every text escaped, nothing fetched from a network,
and a page still made when the frames, the blocks or the isolated table are missing; the sensitivity
table, on the page of `parity sensitivity`'s directory and, kept, on a run's page with its origin."""

import base64
import dataclasses
import json
import os
import re
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch

from parity import plots, report, report_html, sensitivity_cache, stages
from parity.align import Pair
from parity.cases import bundled, cases_dir
from parity.compare import compare
from parity.errors import ParityError
from parity.frames import png_bytes
from parity.results import Comparison, RunReport
from parity.sensitivity import HIGH, LOW, Probe, Search, Target
from parity.sensitivity_table import Finding, Row, summary_line
from parity.tolerance import Policy
from parity.trace import Key
from parity.vocab import Mode

BLOCKS = ["embedders", "transformer_blocks.0", "transformer_blocks.1", "single_transformer_blocks.0"]


def check(stage, tensor, step=None, block=None, rel_l2=1e-7, passed=True, role=None, message=""):
    """A report.json check row as parity.compare.Check.row writes one (the fields the page reads)."""
    return {
        "stage": stage, "tensor": tensor, "step": step, "block": block, "passed": passed,
        "status": "ok" if passed else "mismatch", "tolerance": "atol=0.0001 rtol=1e-05 rel_l2<=5e-05",
        "atol": 1e-4, "rtol": 1e-5, "max_rel_l2": 5e-5, "min_atol": 0.0, "message": message, "role": role,
        "max_abs": rel_l2 * 3 if isinstance(rel_l2, float) else rel_l2, "rel_l2": rel_l2, "cosine": 1.0,
        "sqnr_db": 120.0,
    }  # fmt: skip


def document(checks, **fields):
    doc = {
        "schema_version": 1, "verdict": "pass", "first_divergence": None, "error": None,
        "summary": {"checks": len(checks), "passed": sum(c["passed"] for c in checks)}, "mode": "full",
        "case": {"name": "flux-tiny", "fixture": "flux_tiny", "prompt": "a fox", "seed": 0, "height": 8,
                 "width": 8, "steps": 4, "dtype": "float32", "device": "cpu", "port_ops": "auto"},
        "versions": {"parity": "0.1.0", "torch": "2.14.1"}, "pipelines": {"reference": "R", "port": "P"},
        "plugins": [], "hints": [], "causes": [], "referee": None, "noise": None, "frames_png": [],
        "isolated": None, "notes": [], "timings_s": {"reference": 1.5}, "checks": checks,
    }  # fmt: skip
    return {**doc, **fields}


def failing_flux_checks():
    """Flux-like: both streams through the blocks at steps 0 and 2, the block fault from step 2 on."""
    rows = [check(stages.TEXT_ENCODING, "prompt_embeds")]
    for step in range(4):
        for stream in ("hidden_states", "encoder_hidden_states"):
            for index, block in enumerate(BLOCKS if step in (0, 2) else []):
                bad = stream == "hidden_states" and step == 2 and index >= 2
                role = "cause" if bad and index == 2 else "downstream" if bad else None
                message = "rel_l2=0.01 exceeds 5e-05" if bad else ""
                rows.append(check("denoising", stream, step, block, 0.01 if bad else 0.0, not bad, role, message))
        late = step >= 2
        rows.append(check("denoising", "noise_pred", step, rel_l2=0.004 if late else 2e-7, passed=not late))
        rows.append(check("denoising", "latents", step, rel_l2=0.002 if late else 1e-7, passed=not late))
    return rows


def write_report(directory, doc, frames=None, sensitivity_root=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(report.to_json(doc))
    for name, pixels in (frames or {}).items():
        (directory / name).write_bytes(png_bytes(pixels))  # stored PNGs, as parity.frames writes them
    # no kept sensitivity table unless a test makes one (not the checkout's reports/sensitivity)
    return report_html.render(directory, sensitivity_root or directory / "no-sensitivity")


def images(page):
    """(the <img> tag, its decoded PNG bytes) for every image of the page."""
    found = []
    for tag in re.findall(r"<img [^>]*>", page):
        uri = re.search(r'src="data:image/png;base64,([^"]+)"', tag)
        assert uri is not None, f"an image that is not an inline PNG: {tag[:120]}"
        found.append((tag, base64.b64decode(uri.group(1))))
    return found


def section(page, name):
    start = page.index(f'id="{name}"')
    end = page.find("<section", start)
    return page[start : end if end > 0 else len(page)]


def test_failing_run_page_has_every_section_in_order_and_inline_images(tmp_path):
    reference = np.full((8, 8, 3), 100, dtype=np.uint8)
    port = reference.copy()
    port[1, 2] = (107, 100, 100)  # the largest difference: 7 levels
    port[5, 5] = (100, 97, 100)  # 3 levels
    first = {"stage": "denoising", "tensor": "hidden_states", "step": 2, "block": "transformer_blocks.1"}
    hint = {"at": "denoising/hidden_states step 2", "symptom": "block <b>1</b> differs", "likely_cause": "its code"}
    isolated = {"verdict": "pass", "components": [
        {"component": "DiT block transformer_blocks.1", "checks": 4, "failed": 0, "max_abs": 0.0, "rel_l2": 0.0,
         "cosine": 1.0, "sqnr_db": "inf", "passed": True}]}  # fmt: skip
    referee = {"tensor": "hidden_states", "step": 2, "block": "transformer_blocks.1", "reference_error": 1.6e-7,
               "port_error": 0.02, "port_fp64_vs_reference_fp64": 0.02, "equivalent": False, "closer": "reference",
               "rule": "numerically equivalent when ..."}  # fmt: skip
    checks = failing_flux_checks()
    doc = document(
        checks, verdict="fail", first_divergence=first, hints=[hint], isolated=isolated, referee=referee,
        frames_png=["reference.png", "port.png"], plugins=["parity_plugin_fault_block1_late_steps"],
        case={**document([])["case"], "prompt": '<script>alert("fox")</script> & snow'},
    )  # fmt: skip
    page = write_report(tmp_path, doc, {"reference.png": reference, "port.png": port})

    order = ["verdict", "first-divergence", "parameters", "frames", "stages", "plots", "isolated", "referee"]
    order += ["sensitivity", "checks"]
    assert [page.index(f'id="{name}"') for name in order] == sorted(page.index(f'id="{name}"') for name in order)
    assert '<header id="verdict" class="verdict fail"><h1>FAIL</h1>' in page
    assert "denoising/hidden_states step 2 block transformer_blocks.1" in section(page, "verdict")
    assert "rel_l2=0.01 exceeds 5e-05" in page[: page.index('id="parameters"')]  # the cause's message, up top
    assert "block &lt;b&gt;1&lt;/b&gt; differs" in page and "<b>1</b>" not in page  # hints escaped
    assert "&lt;script&gt;alert(&quot;fox&quot;)&lt;/script&gt; &amp; snow" in section(page, "parameters")
    assert page.count("<script") == 1  # the page's own self-check only
    assert "<code>parity_plugin_fault_block1_late_steps</code>" in section(page, "parameters")
    assert not re.search(r"https?://", page) and "url(" not in page  # nothing to fetch

    shown = images(page)
    assert len(shown) == 5  # reference, port, heatmap, two plots
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for _, data in shown)
    tags = [tag for tag, _ in shown]
    assert sum("frame reference" in t for t in tags) == 1 and sum("frame port" in t for t in tags) == 1
    assert any('id="plot-blocks"' in t for t in tags) and any('id="plot-steps"' in t for t in tags)
    heat = plots.read_png(next(data for tag, data in shown if "heatmap" in tag))
    colours = matplotlib.colormaps[plots.COLORMAP]
    top, black = (np.round(np.array(colours(v)[:3]) * 255) for v in (1.0, 0.0))
    assert np.array_equal(heat[1, 2], top) and np.array_equal(heat[0, 0], black)  # amplified: 7 is the top
    assert np.array_equal(heat[5, 5], np.round(np.array(colours(round(3 * 255 / 7))[:3]) * 255))
    assert "largest difference 7/255" in page and "amplified ×36.4" in page

    stages_table = section(page, "stages")
    assert '<tr class="failed"><td>denoising</td><td class="num">' in stages_table
    assert "<td>hidden_states 2 transformer_blocks.1</td>" in stages_table  # the worst, where report.md says it
    assert "DiT block transformer_blocks.1" in section(page, "isolated")
    assert "not equivalent" in section(page, "referee")
    details = section(page, "checks")
    assert f"All {len(checks)} checks ({sum(not c['passed'] for c in checks)} failing)" in details
    assert details.count("<tr") == len(checks) + 1 and "<details>" in details


def test_video_frames_are_a_strip_on_one_colour_scale(tmp_path):
    frames, names = {}, []
    for t in (0, 2, 4):
        frames[f"reference_frame{t}.png"] = np.full((4, 6, 3), 10 * t, dtype=np.uint8)
        frames[f"port_frame{t}.png"] = np.full((4, 6, 3), 10 * t + t, dtype=np.uint8)  # frame t: t levels off
        names.append(f"reference_frame{t}.png")
    names += [f"port_frame{t}.png" for t in (0, 2, 4)]
    page = write_report(tmp_path, document([check("denoising", "latents", 0)], frames_png=names), frames)
    strip = section(page, "frames")
    assert [h for h in re.findall(r"<th>([^<]*)</th>", strip) if h] == ["frame 0", "frame 2", "frame 4"] + [
        "reference", "port", report_html.e("|port − reference|")
    ]  # fmt: skip
    assert strip.count("frame reference") == 3 and strip.count("frame port") == 3 and strip.count("heatmap") == 3
    assert strip.count('id="colour-scale"') == 1 and "<span>0</span><span>2</span><span>4</span>" in strip
    assert "largest difference 4/255" in strip


def test_page_without_frames_blocks_isolated_table_or_checks(tmp_path):
    doc = document([], verdict="error", error="port: <ImportError> no module", frames_png=["reference.png", "port.png"])
    page = write_report(tmp_path, doc)  # the PNGs it names are not there
    assert "<h1>ERROR</h1>" in page and "port: &lt;ImportError&gt; no module" in page
    assert "No decoded frames in this report directory." in page
    assert "No block outputs were captured" in page and "No denoising step was compared." in page
    assert 'id="isolated"' not in page and 'id="referee"' not in page and "<img" not in page
    assert "All 0 checks (0 failing)" in page

    steps_only = [check("denoising", t, s) for s in range(3) for t in ("noise_pred", "latents")]
    page = write_report(tmp_path / "no-blocks", document(steps_only, isolated={"verdict": "pass", "components": []}))
    assert "No block outputs were captured" in page and 'id="plot-steps"' in page and 'id="plot-blocks"' not in page
    assert 'id="isolated"' not in page


def test_report_write_puts_report_html_beside_report_md(tmp_path):
    ones = torch.ones(3)
    pairs = [Pair(Key("noise_pred", step=s), stages.DENOISING, ones, ones * (2 if s else 1)) for s in range(2)]
    main = Comparison.judge(Mode.FULL, tuple(compare(pairs, Policy("float32"))))
    report.write(tmp_path, RunReport(Mode.FULL, {"name": "t"}, main, main.verdict, main))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checks.csv", "report.html", "report.json", "report.md"]
    page = (tmp_path / "report.html").read_text()
    assert page == report_html.render(tmp_path)  # the page is the report directory's, read back
    assert 'class="verdict fail"' in page and "denoising/noise_pred step 1" in page
    assert len(images(page)) == 1 and 'id="plot-steps"' in page  # the step plot; no frames, no blocks


def test_a_page_that_cannot_be_rendered_costs_the_run_only_the_page(tmp_path):
    ones = torch.ones(3)
    main = Comparison.judge(
        Mode.FULL, tuple(compare([Pair(Key("latents"), stages.LATENT_PREPARATION, ones, ones)], Policy("float32")))
    )
    run = RunReport(Mode.FULL, {"name": "t"}, main, main.verdict, main, frames_png=["reference.png", "port.png"])
    for name in run.frames_png:
        (tmp_path / name).write_bytes(b"not a PNG")  # a frame file that cannot be decoded
    doc = report.write(tmp_path, run)
    assert not (tmp_path / "report.html").exists() and doc["verdict"] == "pass"
    assert {"report.json", "report.md", "checks.csv"} <= {p.name for p in tmp_path.iterdir()}
    assert "Traceback" in (tmp_path / report.HTML_TRACEBACK).read_text()


def test_the_page_reads_report_json_through_load_report(tmp_path):
    tmp_path.joinpath("report.json").write_text(json.dumps({**document([]), "schema_version": 99}))
    with pytest.raises(ParityError, match="schema_version 99"):
        report_html.render(tmp_path)


def test_block_series_one_line_per_step_and_stream_in_block_order(tmp_path):
    rows = failing_flux_checks()
    rows[3]["rel_l2"] = None  # NaN in the DataFrame (a shape mismatch): left out of the line
    tmp_path.joinpath("report.json").write_text(report.to_json(document(rows)))
    blocks, series = plots.block_series(report_html.load_report(tmp_path))
    assert blocks == BLOCKS
    assert [s.label for s in series] == [
        f"step {s} · {t}" for s in (0, 2) for t in ("encoder_hidden_states", "hidden_states")
    ]
    image_step2 = series[3]
    assert image_step2.x == [0, 1, 2, 3] and image_step2.y == [0.0, 0.0, 0.01, 0.01]
    assert image_step2.failed == [False, False, True, True] and image_step2.limit == 5e-5
    assert series[1].x == [0, 1, 3]  # the NaN one (step 0, hidden_states, block 2) is not drawn
    steps = plots.step_series(report_html.load_report(tmp_path))
    assert [s.tensor for s in steps] == ["noise_pred", "latents"] and steps[0].x == [0, 1, 2, 3]
    assert steps[1].failed == [False, False, True, True]


def test_plots_draw_bit_identical_and_infinite_errors(tmp_path):
    rows = [check("denoising", "hidden_states", 0, b, 0.0) for b in BLOCKS]
    rows += [check("denoising", "noise_pred", s, rel_l2=0.0) for s in range(2)]
    rows.append(check("denoising", "latents", 0, rel_l2="inf", passed=False, role="cause"))
    tmp_path.joinpath("report.json").write_text(report.to_json(document(rows)))
    frame = report_html.load_report(tmp_path)
    for png in (plots.blocks_png(frame), plots.steps_png(frame)):
        assert png is not None and png.startswith(b"\x89PNG")
    assert [s.tensor for s in plots.step_series(frame)] == ["noise_pred"]  # an infinite error has no point


def test_importing_the_report_modules_does_not_import_matplotlib():
    code = "import sys, parity.report, parity.report_html, parity.plots; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# -- the sensitivity table -------------------------------------------------------------------------------


def probed(target, smallest, localized=True, first_new=None):
    """A row of `parity sensitivity`'s table: detected from `smallest` on (None: blind at HIGH)."""
    if smallest is None:
        return Row(target, Finding.BLIND, Search((Probe(HIGH, False),), None, HIGH), fed=True, port_runs=1)
    hit = Probe(smallest, True, first_new or target.label(), localized)
    return Row(target, Finding.DETECTED, Search((Probe(HIGH, True), hit), hit, smallest / 1.8), fed=True, port_runs=2)


SENSITIVITY_ROWS = [
    probed(Target(stages.TEXT_ENCODING, "prompt_embeds"), 3.2e-2),
    Row(Target(stages.LATENT_PREPARATION, "latents"), Finding.FAILS_UNPERTURBED),
    probed(Target(stages.TIMESTEP_PREPARATION, "sigmas"), 1.8e-6, False, "denoising/<b>latents</b> step 0"),
    probed(Target(stages.DENOISING, "hidden_states", 0, "transformer_blocks.0"), 5.6e-2),
    probed(Target(stages.DENOISING, "noise_pred", 0), None),
]


def sensitivity_doc(case, key="k", inputs=None, created="2026-01-02T03:04:05+00:00"):
    """report.json of `parity sensitivity` (parity.sensitivity_run.document), as read back."""
    summary = summary_line(case.dtype, SENSITIVITY_ROWS)
    doc = {
        "kind": "sensitivity", "created": created, "case": case.as_dict(), "family": "flux",
        "versions": {"parity": "0.1.0", "sglang": "0.5.23"}, "pipelines": {"reference": "R", "port": "P"},
        "sensitivity": {
            "key": key, "key_inputs": inputs or {"versions": "parity 0.1.0, sglang 0.5.23"}, "summary": summary,
            "mode": "isolated", "low": LOW, "high": HIGH, "halvings": 2, "seed": 0,
            "unperturbed": {"verdict": "pass", "first_divergence": None, "checks": 61, "passed": 60,
                            "failing": ["latent_preparation/latents"]},
            "rows": [r.as_dict() for r in SENSITIVITY_ROWS], "port_runs": 9,
            "seconds": {"reference": 1.0, "unperturbed": 2.0, "probes": 30.0, "total": 33.0},
        },
    }  # fmt: skip
    return json.loads(json.dumps(doc))


def keep(root, case, doc):
    """A table kept where `parity sensitivity` keeps it."""
    out = sensitivity_cache.out_dir(case, root)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(doc))
    return out


def current(case):
    """The key inputs a table made now for `case` (the bundled case, its file) holds under, and the key."""
    inputs = sensitivity_cache.key_inputs(case, None, cases_dir() / f"{case.name}.toml")
    return sensitivity_cache.key(inputs), inputs


def table_rows(section_html):
    return [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", section_html)[1:]]


def test_the_sensitivity_directory_gets_a_page_of_its_table(tmp_path):
    case = bundled()["flux-tiny"].with_overrides(dtype="bfloat16")
    case = dataclasses.replace(case, prompt='<script>alert("fox")</script>')
    doc = sensitivity_doc(case, "abc123", {"case": "c0ffee", "versions": "parity 0.1.0"})
    out = keep(tmp_path, case, doc)
    page = report_html.write_sensitivity(out).read_text()

    head = section(page, "head")
    assert '<header id="head" class="verdict sensitivity"><h1>SENSITIVITY</h1>' in page
    assert "flux-tiny · bf16 · cpu · isolated mode · 5 tensors probed in 9 port runs" in head
    summary = doc["sensitivity"]["summary"]
    assert summary.startswith("bf16: blind up to 1e-1 in the DiT output") and "&lt;b&gt;latents" in head
    assert f"<b>{report_html.e(summary)}</b>" in head
    table = section(page, "sensitivity")
    rows = table_rows(table)
    assert [r[:7] for r in rows] == [
        ["text_encoding", "prompt_embeds", "", "", "3.2e-2", "1.8e-2", "yes"],
        ["latent_preparation", "latents", "", "", "fails unperturbed (not probed)", "–", "–"],
        ["timestep_preparation", "sigmas", "", "", "1.8e-6", "1e-6", "no"],
        ["denoising", "hidden_states", "0", "transformer_blocks.0", "5.6e-2", "3.1e-2", "yes"],
        ["denoising", "noise_pred", "0", "", "blind at 1e-1", "1e-1", "–"],
    ]
    assert rows[2][7] == "denoising/&lt;b&gt;latents&lt;/b&gt; step 0"  # the first new failure, escaped
    marks = re.findall(r"<tr( class=\"weak\")?><td", table)
    assert marks == ["", ' class="weak"', ' class="weak"', "", ' class="weak"']  # not probed, astray, blind
    assert "Failing unperturbed: <code>latent_preparation/latents</code>" in table
    assert "Unperturbed (isolated): PASS (60/61 checks)" in table  # report.md's method text
    assert "&lt;script&gt;alert(&quot;fox&quot;)&lt;/script&gt;" in section(page, "parameters")
    assert "probes 30, total 33" in section(page, "parameters")
    key = section(page, "sensitivity-key")
    assert "<code>abc123</code>" in key and "<th>case</th><td>c0ffee</td>" in key and "2026-01-02T03:04:05" in key
    assert page.count("<script") == 1 and "<img" not in page and not re.search(r"https?://", page)


def test_a_page_that_is_not_a_sensitivity_table_is_refused(tmp_path):
    tmp_path.joinpath("report.json").write_text(report.to_json(document([])))
    with pytest.raises(ParityError, match="not a table of `parity sensitivity`"):
        report_html.render_sensitivity(tmp_path)


def test_a_run_page_shows_the_table_kept_for_its_case_and_where_it_came_from(tmp_path):
    case = bundled()["flux-tiny"]
    root = tmp_path / "sensitivity"
    key, inputs = current(case)
    kept = keep(root, case, sensitivity_doc(case, key, inputs))
    bf16 = case.with_overrides(dtype="bfloat16")
    keep(root, bf16, sensitivity_doc(bf16, "old", {**current(bf16)[1], "versions": "sglang 0.5.22"}))
    run = document([check("denoising", "noise_pred", 0)], case=json.loads(json.dumps(case.as_dict())))
    page = write_report(tmp_path / "run", run, sensitivity_root=root)

    shown = section(page, "sensitivity")
    assert "What this verdict can see (kept sensitivity table)" in shown
    assert f"From <code>{kept / 'report.json'}</code>, made 2026-01-02T03:04:05+00:00" in shown
    assert report_html.e(inputs["versions"]) in shown and "holds for this run" in shown
    assert "not re-run for this page" in shown and 'class="hint"' not in shown  # current: no stale warning
    lines = re.findall(r"<li>(.*?)</li>", shown)
    assert lines[0].startswith("<b>fp32: blind up to 1e-1") and "(stale" not in lines[0]  # the run's dtype first
    assert lines[1].startswith("<b>bf16: ") and lines[1].endswith("<i>(stale: changed: versions)</i>")
    assert len(table_rows(shown)) == len(SENSITIVITY_ROWS)  # the run's dtype's table only
    assert page.count("<script") == 1


def test_a_stale_kept_table_is_labelled_with_what_changed(tmp_path):
    case = bundled()["flux-tiny"]
    root = tmp_path / "sensitivity"
    _, inputs = current(case)
    made_before_dates = sensitivity_doc(case, "old", {**inputs, "tolerances": "0ld", "method": "1"})
    del made_before_dates["created"]  # a table made before it recorded its date: the file's time is shown
    out = keep(root, case, made_before_dates)
    os.utime(out / "report.json", (1767225600, 1767225600))
    page = write_report(tmp_path / "run", document([], case=case.as_dict()), sensitivity_root=root)
    shown = section(page, "sensitivity")
    assert "made 2026-01-01T00:00:00+00:00 (file time)" in shown and "its key does not hold for this run" in shown
    stale = "<b>Stale:</b> made for other inputs than this run's (changed: tolerances, method), so it may not hold here"
    assert f'<div class="hint">{stale}' in shown
    assert "<code>parity sensitivity flux-tiny --dtype float32</code> measures it again" in shown
    assert len(table_rows(shown)) == len(SENSITIVITY_ROWS)  # still shown, under the warning


def test_a_run_page_without_a_kept_table_says_how_to_make_one(tmp_path):
    root = tmp_path / "sensitivity"
    page = write_report(tmp_path / "run", document([]), sensitivity_root=root)
    shown = section(page, "sensitivity")
    assert "No sensitivity table is kept for flux-tiny in float32" in shown
    assert f"<code>{root / 'flux-tiny-float32'}</code>" in shown
    assert "<code>parity sensitivity flux-tiny --dtype float32</code>" in shown and "<table" not in shown

    keep(root, bundled()["flux-tiny"], {"kind": "sensitivity", "sensitivity": ["not", "a", "table"]})
    shown = section(write_report(tmp_path / "run", document([]), sensitivity_root=root), "sensitivity")
    assert "could not be read: AttributeError" in shown  # the page is still made
    assert 'id="sensitivity"' not in write_report(tmp_path / "no-case", document([], case={}))


def test_the_sensitivity_run_writes_the_page_and_a_fault_in_it_costs_only_the_page(tmp_path):
    from parity.sensitivity_run import write_page

    case = bundled()["flux-tiny"]
    out = keep(tmp_path, case, sensitivity_doc(case))
    write_page(out)
    assert (out / "report.html").read_text() == report_html.render_sensitivity(out)
    (out / "report.html").unlink()
    (out / "report.json").write_text(json.dumps({"kind": "sensitivity", "sensitivity": {"rows": "x"}}))
    write_page(out)
    assert not (out / "report.html").exists() and "Traceback" in (out / report.HTML_TRACEBACK).read_text()


def test_the_audit_section_names_the_flags_and_each_kinds_largest_difference_and_floor(tmp_path):
    flagged = "audit/hidden_states step 0 block transformer_blocks.<0>"
    audit_section = {
        "mode": "fp64", "rule": "rel_l2 <= max(10 x floor, 1e-12)", "step": 0, "components": 11,
        "flagged": [flagged], "not_audited": "the text encoders", "seconds": 1.25,
        "largest_by_kind": {"block": {"rel_l2": 7.9e-7, "floor": 4.3e-9, "at": "hidden_states step 0 block b"}},
    }  # fmt: skip
    page = write_report(tmp_path, document([], audit=audit_section))
    found = section(page, "audit")
    assert "1 of 11 components flagged" in found and "transformer_blocks.&lt;0&gt;" in found  # escaped
    assert "7.9e-07" in found and "4.3e-09" in found and "rel_l2 &lt;= max(10 x floor, 1e-12)" in found
    skipped = write_report(tmp_path / "skipped", document([], audit={"mode": "fp64", "skipped": "AssertionError"}))
    assert "Skipped: AssertionError" in section(skipped, "audit")
    assert 'id="audit"' not in write_report(tmp_path / "none", document([]))
