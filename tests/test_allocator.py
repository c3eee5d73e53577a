"""The collab process pins glibc's allocator thresholds, unless the user set them."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = (
    "import os; from analysis.allocator import pin_allocator; "
    "print(pin_allocator(), os.environ.get('MALLOC_MMAP_THRESHOLD_'), "
    "os.environ.get('MALLOC_TRIM_THRESHOLD_'))"
)


def run_probe(**env_overrides: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_overrides)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, env=env, check=True
    )
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_pins_both_thresholds_and_passes_them_to_child_processes():
    assert run_probe() == ["True", "33554432", "67108864"]


def test_leaves_a_users_own_setting_alone():
    assert run_probe(MALLOC_TRIM_THRESHOLD_="131072") == ["False", "None", "131072"]
