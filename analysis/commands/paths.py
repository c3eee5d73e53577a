"""Where the source checkout is: presets, the shipped runs and the app live beside the package."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
