"""Headless Chromium against a local Streamlit server: shared by the browser tests and
``benchmarks/bench_app.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = Path(os.environ.get("COLLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, *, timeout: float = 60.0) -> None:
    """Return once the Streamlit server at ``url`` answers its health check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


def settled(page, title: str, *, timeout_ms: int) -> None:
    """Wait until ``title``'s page has finished running, drawn a chart and dropped its spinners."""
    page.locator("h1", has_text=title).first.wait_for(timeout=timeout_ms)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms
    )
    page.wait_for_selector(".js-plotly-plot", timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stSpinner"]', state="detached", timeout=timeout_ms)
