"""The app in a real browser: `streamlit run` as a subprocess, driven by Debian's Chromium.

Every page is opened on the embedded runs, left to finish running, and checked for a drawn
plotly chart and for the absence of exception and error boxes; a screenshot of each page and
the measured timings (first chart after start, page switches with warm caches; recorded, never
asserted) go to ``test-artifacts/browser/``. Skipped only when Chromium is not installed
(``apt-get install -y chromium``; CI installs it in ``.ci/run``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS, free_port, settled, wait_healthy

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
# (navigation label, page title); the first is the default page.
PAGES = [
    ("Overview", "Overview"),
    ("Agreement", "Agreement"),
    ("Attributions", "Attributions"),
    ("Similarity", "Similarity"),
    ("Vocabulary", "Vocabulary"),
    ("Localization", "Localization"),
    ("Compare runs", "Compare runs"),
]
TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1400, "height": 1000}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def app_url():
    """``streamlit run app/main.py`` on a free localhost port with the repo's runs."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "COLLAB_RUNS_ROOT": str(REPO / "runs")}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app/main.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    log = open(ARTIFACTS / "server.log", "w")  # noqa: SIM115 -- closed below
    started = time.monotonic()
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        yield url, started
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def problems(page) -> list[str]:
    """Text of every exception box and error alert on the page."""
    boxes = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    return [boxes.nth(i).inner_text() for i in range(boxes.count())]


def check_page(page, title: str, shot: str) -> None:
    settled(page, title, timeout_ms=TIMEOUT_MS)
    assert page.locator(".js-plotly-plot").count() >= 1, f"{title}: no chart drawn"
    assert page.locator(".js-plotly-plot .main-svg").count() >= 1, f"{title}: plotly drew nothing"
    assert problems(page) == [], f"{title} shows errors: {problems(page)}"
    # Streamlit scrolls inside its main block, not the page: grow the window to fit it all.
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    size = page.viewport_size
    page.set_viewport_size(
        {"width": size["width"], "height": max(size["height"], min(int(height), 6000))}
    )
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"))
    page.set_viewport_size(size)


def open_page(page, label: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=label).first.click()


def test_every_page_draws_its_charts_without_errors(app_url, browser):
    url, started = app_url
    page = browser.new_page(viewport=VIEWPORT)
    timings = {"server_ready_s": time.monotonic() - started}
    try:
        opened = time.monotonic()
        page.goto(url, timeout=TIMEOUT_MS)
        page.locator("h1", has_text="Overview").first.wait_for(timeout=TIMEOUT_MS)
        timings["first_title_after_open_s"] = time.monotonic() - opened
        page.wait_for_selector(".js-plotly-plot", timeout=TIMEOUT_MS)
        timings["first_chart_after_start_s"] = time.monotonic() - started
        timings["first_chart_after_open_s"] = time.monotonic() - opened
        check_page(page, "Overview", "overview")
        for label, title in PAGES[1:]:  # cold: each page computes its probes once
            begun = time.monotonic()
            open_page(page, label)
            check_page(page, title, label.lower().replace(" ", "-"))
            timings[f"cold {label}_s"] = time.monotonic() - begun
        for label, title in PAGES:  # warm: every result is cached now
            begun = time.monotonic()
            open_page(page, label)
            settled(page, title, timeout_ms=TIMEOUT_MS)
            timings[f"warm {label}_s"] = time.monotonic() - begun
            assert problems(page) == [], f"{title} shows errors on a second visit: {problems(page)}"
    finally:
        (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2))
        page.close()


def test_downloads_hold_the_figure_data_and_a_standalone_figure(app_url, browser):
    url, _ = app_url
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"{url}/similarity", timeout=TIMEOUT_MS)
        settled(page, "Similarity", timeout_ms=TIMEOUT_MS)
        buttons = page.locator('[data-testid="stDownloadButton"] button')
        with page.expect_download(timeout=TIMEOUT_MS) as csv_download:
            buttons.filter(has_text="CSV").first.click()
        assert csv_download.value.suggested_filename == "dml-digits-cka_layers.csv"
        lines = Path(csv_download.value.path()).read_text().splitlines()
        assert lines[0] == "trace,name,x,y,z" and len(lines) == 1 + 4 * 4  # 4 x 4 layers
        assert all(0.0 <= float(line.rsplit(",", 1)[1]) <= 1.0 + 1e-9 for line in lines[1:])
        with page.expect_download(timeout=TIMEOUT_MS) as html_download:
            buttons.filter(has_text="HTML").first.click()
        html = Path(html_download.value.path()).read_text()
        assert html_download.value.suggested_filename == "dml-digits-cka_layers.html"
        assert (
            html.lstrip().lower().startswith("<!doctype html>")
            and "CKA: resnet8#0 vs resnet8#1" in html
        )
        assert 'src="https://cdn.plot.ly' not in html and len(html) > 1_000_000  # plotly.js inline
        assert problems(page) == []
    finally:
        page.close()


def test_upload_garbage_then_an_image(app_url, browser):
    from PIL import Image

    url, _ = app_url
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"{url}/attributions", timeout=TIMEOUT_MS)
        settled(page, "Attributions", timeout_ms=TIMEOUT_MS)
        page.get_by_text("upload", exact=True).click()
        upload = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        upload.wait_for(state="attached", timeout=TIMEOUT_MS)
        upload.set_input_files(
            files=[
                {"name": "junk.png", "mimeType": "image/png", "buffer": b"\x00not an image" * 50}
            ]
        )
        error = page.locator('[data-testid="stAlertContentError"]')
        error.wait_for(timeout=TIMEOUT_MS)
        assert "not a readable image" in error.inner_text()
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(ARTIFACTS / "upload-error.png"))

        buf = io.BytesIO()
        digit = Image.new("RGBA", (80, 120), (255, 255, 255, 255))  # RGBA, non-square, larger
        for y in range(20, 100):
            for x in range(35, 45):
                digit.putpixel((x, y), (0, 0, 0, 255))
        digit.save(buf, "PNG")
        upload.set_input_files(
            files=[{"name": "one.png", "mimeType": "image/png", "buffer": buf.getvalue()}]
        )
        # Wait for the new file to replace the junk one before touching another widget.
        page.locator('[data-testid="stFileChipName"]', has_text="one.png").wait_for(
            timeout=TIMEOUT_MS
        )
        page.get_by_text("Invert (dark ink on light paper)").click()
        try:
            error.wait_for(state="detached", timeout=TIMEOUT_MS)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "upload-stuck.png"))
            raise AssertionError(
                f"the error stayed after a good upload: {problems(page)}"
            ) from None
        settled(page, "Attributions", timeout_ms=TIMEOUT_MS)
        assert page.locator(".js-plotly-plot").count() >= 2
        assert problems(page) == []
        page.screenshot(path=str(ARTIFACTS / "upload-image.png"))
    finally:
        page.close()
