"""report.html of real runs, opened in headless Chromium: a passing flux-tiny, the block fault from step 2
on (tests/plugins/fault_block1_late_steps.py) and a video (wan-t2v-tiny). Each page is screenshot to
reports/screenshots/ for a person to look at, and its DOM, dumped after the page has loaded, must hold the
verdict, both frames, the heatmap and both plots, with every image decoded and nothing fetched (the page's
own script marks <body> with those counts).

Without Chromium (Debian: `apt-get install chromium`) the tests skip, unless PARITY_REQUIRE_BROWSER=1
(.ci/run sets it), where they fail.
"""

import os
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.pipeline
ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).parent / "plugins"
SCREENSHOTS = ROOT / "reports" / "screenshots"
WINDOW = (1400, 3000)


@pytest.fixture
def browser() -> str:
    """Chromium's path, asked for before a pipeline runs: a missing browser costs no run."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    why = "headless Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("PARITY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why}, and PARITY_REQUIRE_BROWSER=1 requires it")
    pytest.skip(f"{why}; PARITY_REQUIRE_BROWSER=1 makes this a failure")


class Elements(HTMLParser):
    """Every element's tag, attributes and the text directly inside it, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], list[str]]] = []
        self.open: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        text: list[str] = []
        self.found.append((tag, {k: v or "" for k, v in attrs}, text))
        if tag not in ("img", "meta", "br", "input"):
            self.open.append(text)

    def handle_endtag(self, tag):
        if self.open:
            self.open.pop()

    def handle_data(self, data):
        for text in self.open:  # text counts for every element it is inside
            text.append(data)

    def select(self, tag, **wanted):
        return [
            (attrs, "".join(text))
            for name, attrs, text in self.found
            if name == tag
            and all(
                value in attrs.get(key.rstrip("_"), "").split() if key.endswith("_") else attrs.get(key) == value
                for key, value in wanted.items()
            )
        ]


def parity_run(tmp_path, case, *args):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "parity", "run", case, "--out", str(out), "-q", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (out / "report.html").is_file(), proc.stdout + proc.stderr[-3000:]
    return proc, out / "report.html"


def browse(browser, tmp_path, page, *args):
    """Chromium on the page, headless, with a profile of its own (no state shared between runs)."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    command += [f"--user-data-dir={tmp_path / 'chromium-profile'}", *args, page.as_uri()]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def look(browser, tmp_path, page, name, frames):
    """Screenshot the page to reports/screenshots/<name>.png; return its DOM once loaded, checked for
    what every report page must show."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    browse(browser, tmp_path, page, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == WINDOW

    dom = Elements()
    # The virtual time budget lets the page load and decode its images before the DOM is dumped.
    dom.feed(browse(browser, tmp_path, page, "--virtual-time-budget=15000", "--dump-dom"))
    (body,) = [attrs for attrs, _ in dom.select("body")]
    images = dom.select("img")
    assert body.get("data-images") == str(len(images)) and images, "the page's load script did not run"
    assert body["data-broken-images"] == "0", "an image did not decode"
    assert body["data-fetched"] == "0", "the page fetched a resource: it must be self-contained"
    for kind in ("reference", "port", "heatmap"):
        assert len(dom.select("img", class_=kind)) == frames, kind
    assert dom.select("img", id="plot-blocks") and dom.select("img", id="plot-steps")
    assert dom.select("div", id="colour-scale")
    (summary,) = [text for _, text in dom.select("summary")]
    assert summary.startswith("All ") and "checks" in summary
    return dom, body


def verdict(dom):
    ((attrs, text),) = dom.select("header", id="verdict")
    return attrs["class"], text


def test_passing_flux_tiny_page(browser, tmp_path):
    proc, page = parity_run(tmp_path, "flux-tiny", "--dtype", "float32")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    dom, body = look(browser, tmp_path, page, "flux-tiny-pass", frames=1)
    css, text = verdict(dom)
    assert body["data-verdict"] == "pass" and css == "verdict pass" and text.startswith("PASS")
    assert not dom.select("div", id="first-divergence") and not dom.select("div", class_="hint")


def test_block_fault_from_step_2_page(browser, tmp_path):
    proc, page = parity_run(tmp_path, "flux-tiny", "--plugin", str(PLUGINS / "fault_block1_late_steps.py"))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    dom, body = look(browser, tmp_path, page, "fault-block-step2", frames=1)
    css, text = verdict(dom)
    assert body["data-verdict"] == "fail" and css == "verdict fail" and text.startswith("FAIL")
    ((_, first),) = dom.select("div", id="first-divergence")
    assert "denoising/hidden_states step 2 block transformer_blocks.1" in first
    hints = [text for _, text in dom.select("div", class_="hint")]
    assert hints and "transformer_blocks.1" in hints[0]
    (params,) = [text for _, text in dom.select("section", id="parameters")]
    assert "fault_block1_late_steps" in params  # the plugin, as its module name


def test_video_page(browser, tmp_path):
    proc, page = parity_run(tmp_path, "wan-t2v-tiny")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr[-3000:]  # wan-t2v-tiny fp32 fails as expected
    dom, body = look(browser, tmp_path, page, "wan-t2v-tiny", frames=3)  # first, middle and last frame
    assert body["data-verdict"] in ("pass", "fail")
    headers = [text for _, text in dom.select("th")]
    assert {"frame 0", "frame 2", "frame 4"} <= set(headers)
