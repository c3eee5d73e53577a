"""Images from outside: phone photos up to ~100 megapixels are accepted and downscaled cheaply;
bombs, truncated, empty and foreign files get one sentence naming the problem and the fix."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from analysis.data import upload
from analysis.data.upload import load_image
from analysis.errors import CollabError
from tests.data.test_upload import encode


def announcing(width: int, height: int) -> bytes:
    """A small valid PNG whose header announces ``width`` x ``height`` pixels (a bomb's shape)."""
    png = bytearray(encode(Image.new("1", (8, 8))))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    png[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    png[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(png[ihdr - 4 : ihdr + 13])))
    return bytes(png)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00garbage bytes, not an image" * 10, "not a readable image"),
        (encode(Image.new("RGB", (64, 64), (9, 9, 9)))[:60], "truncated or corrupt"),
        (encode(Image.effect_noise((640, 480), 64), "JPEG")[:8000], "truncated or corrupt"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "not a readable"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "not a readable image"),
        (announcing(1, 0), "not a readable image"),
        (announcing(30000, 30000), "too large"),
        (announcing(12000, 10000), "120 megapixels"),
    ],
)
def test_bad_files_raise_one_clear_sentence(data, message):
    with pytest.raises(CollabError) as raised:
        load_image(data, in_chans=1, image_size=32)
    text = str(raised.value)
    assert message in text and "\n" not in text and ";" in text  # problem; fix


def test_file_size_limit_is_checked_before_decoding():
    with pytest.raises(CollabError, match="over the 64 MB limit"):
        load_image(b"\x89PNG" + b"\x00" * (64 * 2**20), in_chans=1, image_size=8)
    data = encode(Image.new("L", (8, 8)))
    with pytest.raises(CollabError, match="limit"):
        load_image(data, in_chans=1, image_size=8, max_bytes=len(data) - 1)


def _half_dark_half_bright(width: int, height: int, mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, (width, height), 0)
    image.paste(255 if mode == "L" else (255, 255, 255), (width // 2, 0, width, height))
    return image


@pytest.mark.parametrize(
    ("size", "fmt"),
    [((8000, 6000), "JPEG"), ((5472, 3648), "PNG")],
    ids=["48-megapixel-jpeg", "20-megapixel-png"],
)
def test_phone_photos_are_accepted_and_downscaled(size, fmt):
    data = encode(_half_dark_half_bright(*size), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    out = load_image(data, in_chans=3, image_size=32)
    assert out.shape == (3, 32, 32)
    middle = out[:, 16]  # the middle row: dark left half, bright right half, no padding there
    assert middle[:, 2:14].max() < 0.05 and middle[:, 18:30].min() > 0.95


def test_downscaled_decode_matches_a_full_decode(monkeypatch):
    """Draft decoding and box reduction change the model input little (mean < 0.03 in [0, 1])."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    data = encode(Image.fromarray(small).resize((4096, 3072), Image.NEAREST), "JPEG", quality=95)
    fast = load_image(data, in_chans=3, image_size=32)
    monkeypatch.setattr(upload, "_OVERSAMPLE", 10**6)  # decode and convert at full size
    full = load_image(data, in_chans=3, image_size=32)
    assert (fast - full).abs().mean() < 0.03
