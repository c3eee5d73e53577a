"""The app listens on localhost wherever it starts, leaves no server behind, and opens only the
runs inside its root."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import analysis
from tests.conftest import REPO

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listeners(port: int) -> set[str]:
    """Local addresses listening on ``port`` (IPv4 as dotted quads, IPv6 as hex)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == LISTEN:
                if len(addr) == 8:  # little-endian IPv4
                    addr = ".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0))
                found.add(addr)
    return found


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 90) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := _listeners(port):
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the server exited early: {proc.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError(f"nothing listened on port {port} within {timeout} s")


needs_proc = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp")


@needs_proc
def test_plain_streamlit_run_from_another_folder_listens_on_localhost(tmp_path):
    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path), "COLLAB_RUNS_ROOT": str(REPO / "runs")}
    env = {k: v for k, v in env.items() if not k.startswith("STREAMLIT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app/main.py")]
        + ["--server.port", str(port)],
        cwd=tmp_path,  # no .streamlit/config.toml here, none in HOME either
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_listening(port, proc) == {"127.0.0.1"}
    finally:
        proc.kill()
        proc.wait(timeout=30)


@needs_proc
def test_collab_app_leaves_no_server_behind(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "analysis.cli", "app", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_listening(port, proc) == {"127.0.0.1"}
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _listeners(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listeners(port), "a Streamlit server still listens after collab app stopped"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_run_listing_ignores_links_out_of_the_root(tiny_run, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "elsewhere").symlink_to(tiny_run, target_is_directory=True)
    (root / "up").symlink_to("..", target_is_directory=True)
    (tmp_path / "sibling").symlink_to(tiny_run, target_is_directory=True)  # reachable via up/
    assert analysis.list_runs(root) == []


def test_run_listing_keeps_runs_and_links_inside_the_root(tiny_run, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(tiny_run, root / "real")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert [p.name for p in analysis.list_runs(root)] == ["alias", "real"]
