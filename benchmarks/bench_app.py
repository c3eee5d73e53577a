"""The app in headless Chromium: `collab app` start to the first chart, and warm page switches.

    python benchmarks/bench_app.py [--repeats 3] [--rounds 3] [--root runs]

Start: wall time from starting the server process to the first plotly chart drawn in the
browser (the Overview page of the default run), for ``collab app`` and for a baseline: a
one-chart Streamlit script started the same way (Streamlit + plotly's own floor), interleaved,
medians; target <= 5 s. Switches: after every page has been opened once (cold: its probes run,
or come from the run folder's ``probes/`` cache), each page is opened from the sidebar again
``--rounds`` times; the median per page, target <= 1 s for every page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.browser.chromium import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    settled,
    wait_healthy,
)

PAGES = [
    "Overview",
    "Agreement",
    "Attributions",
    "Similarity",
    "Vocabulary",
    "Localization",
    "Compare runs",
]
TIMEOUT_MS = 120_000
BASELINE_APP = """
import plotly.graph_objects as go
import streamlit as st

st.title("Overview")
st.plotly_chart(go.Figure(go.Scatter(y=[1, 3, 2])))
"""


class Server:
    """A Streamlit server process on a free localhost port (``{port}`` in ``command``), stopped
    on exit."""

    def __init__(self, command: list[str], root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "COLLAB_RUNS_ROOT": str(root),
            "STREAMLIT_SERVER_HEADLESS": "true",  # no browser, no e-mail prompt
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        }
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [arg.format(port=self.port) for arg in command],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def first_chart(browser, server: Server) -> float:
    """Seconds from the server's start to the first chart drawn in a new browser page."""
    wait_healthy(server.url, server.process, timeout=120.0)
    page = browser.new_page()
    try:
        page.goto(server.url, timeout=TIMEOUT_MS)
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=TIMEOUT_MS)
        return time.monotonic() - server.started
    finally:
        page.close()


def switches(browser, server: Server, rounds: int) -> tuple[dict[str, float], dict[str, list]]:
    """Cold seconds per page (first visit), then ``rounds`` warm visits per page."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    cold, warm = {}, {name: [] for name in PAGES}
    try:
        page.goto(server.url, timeout=TIMEOUT_MS)
        settled(page, PAGES[0], timeout_ms=TIMEOUT_MS)
        for rnd in range(rounds + 1):
            for name in [*PAGES[1:], PAGES[0]]:
                begun = time.monotonic()
                page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
                settled(page, name, timeout_ms=TIMEOUT_MS)
                seconds = time.monotonic() - begun
                if rnd == 0:
                    cold[name] = seconds
                else:
                    warm[name].append(seconds)
    finally:
        page.close()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="server starts of each kind")
    parser.add_argument("--rounds", type=int, default=3, help="warm visits of every page")
    parser.add_argument("--root", type=Path, default=REPO / "runs", help="the runs root")
    args = parser.parse_args()
    if args.repeats < 1 or args.rounds < 1:
        parser.error("--repeats and --rounds must be at least 1")
    if not CHROMIUM.exists():
        print(f"needs Chromium at {CHROMIUM} (or $COLLAB_CHROMIUM); skipped")
        return
    from playwright.sync_api import sync_playwright

    root = args.root.resolve()
    cached = sorted(p.parent.name for p in root.glob("*/probes") if any(p.iterdir()))
    ours = [sys.executable, "-m", "analysis.cli", "app", "--root", str(root), "--port", "{port}"]
    print(f"runs root {root}; run folders with cached probe results: {cached or 'none'}")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        script = Path(tmp) / "baseline.py"
        script.write_text(BASELINE_APP)
        base = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", "{port}"]
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        times: dict[str, list[float]] = {"collab app": [], "baseline": []}
        for _ in range(args.repeats):
            for label, command in (("collab app", ours), ("baseline", base)):
                with Server(command, root) as server:
                    times[label].append(first_chart(browser, server))
        for label, values in times.items():
            runs = ", ".join(f"{t:.2f}" for t in values)
            print(
                f"start to first chart, {label:<10}: median {statistics.median(values):.2f} s ({runs})"
            )
        ratio = statistics.median(times["collab app"]) / statistics.median(times["baseline"])
        print(f"ratio collab app / baseline: {ratio:.2f}  target: collab app <= 5 s")
        with Server(ours, root) as server:
            first_chart(browser, server)
            cold, warm = switches(browser, server, args.rounds)
        browser.close()
    for name in PAGES:
        print(
            f"{name:<13} cold {cold[name]:6.2f} s   warm median {statistics.median(warm[name]):.2f} s "
            f"(max {max(warm[name]):.2f})"
        )
    slowest = max(PAGES, key=lambda name: statistics.median(warm[name]))
    print(
        f"slowest warm switch: {slowest} {statistics.median(warm[slowest]):.2f} s  target <= 1 s; "
        f"load average now {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
