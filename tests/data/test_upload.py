"""load_image: known pixel values after conversion, and one clear error for every bad file."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from analysis.data.upload import load_image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def test_grey_png_keeps_its_exact_values():
    pixels = np.array([[0, 51], [204, 255]], dtype=np.uint8)
    out = load_image(encode(Image.fromarray(pixels, "L")), in_chans=1, image_size=2)
    assert out.shape == (1, 2, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.2], [0.8, 1.0]]))


def test_colour_to_grey_uses_luma_and_grey_to_colour_repeats():
    red = Image.new("RGB", (3, 3), (255, 0, 0))
    grey = load_image(encode(red), in_chans=1, image_size=3)
    torch.testing.assert_close(grey, torch.full((1, 3, 3), 76 / 255))  # round(0.299 * 255)
    rgb = load_image(encode(Image.new("L", (3, 3), 102)), in_chans=3, image_size=3)
    torch.testing.assert_close(rgb, torch.full((3, 3, 3), 0.4))


def test_rgba_is_composited_over_the_background():
    image = Image.new("RGBA", (2, 1))
    image.putpixel((0, 0), (255, 255, 255, 0))  # fully transparent white
    image.putpixel((1, 0), (255, 255, 255, 255))  # opaque white
    data = encode(image)
    on_black = load_image(data, in_chans=1, image_size=2)[0]
    torch.testing.assert_close(on_black, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))  # padded row
    on_white = load_image(data, in_chans=3, image_size=2, background=1.0)
    torch.testing.assert_close(on_white, torch.ones(3, 2, 2))


def test_palette_transparency_and_sixteen_bit_images():
    pal = Image.new("P", (1, 1), 0)
    pal.putpalette([200, 200, 200] * 256)
    pal.info["transparency"] = 0
    assert load_image(encode(pal, transparency=0), in_chans=1, image_size=1).item() == 0.0
    wide = Image.fromarray(np.array([[65535, 0]], dtype=np.uint16))
    out = load_image(encode(wide), in_chans=1, image_size=2)[0]
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_non_square_images_are_padded_not_stretched():
    out = load_image(encode(Image.new("L", (4, 2), 255)), in_chans=1, image_size=4)[0]
    torch.testing.assert_close(out[1:3], torch.ones(2, 4))
    torch.testing.assert_close(out[[0, 3]], torch.zeros(2, 4))


def test_inverted_images_are_padded_with_the_background_too():
    ink_on_paper = Image.new("LA", (4, 2), (0, 255))  # black ink, opaque
    ink_on_paper.putpixel((0, 0), (0, 0))  # one transparent pixel: the paper shows
    out = load_image(encode(ink_on_paper), in_chans=1, image_size=4, invert=True)[0]
    expected = torch.zeros(4, 4)
    expected[1:3] = 1.0
    expected[1, 0] = 0.0
    torch.testing.assert_close(out, expected)


def test_resize_to_the_run_image_size_and_invert():
    data = encode(Image.new("RGB", (64, 48), (51, 51, 51)))
    out = load_image(data, in_chans=3, image_size=32, background=0.2)
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out, torch.full((3, 32, 32), 0.2))
    torch.testing.assert_close(
        load_image(data, in_chans=3, image_size=32, background=0.8, invert=True),
        torch.full((3, 32, 32), 0.8),
    )


def test_exif_orientation_is_applied():
    image = Image.new("L", (2, 1), 0)
    image.putpixel((1, 0), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_image(encode(image, exif=exif), in_chans=1, image_size=2)[0]
    # upright: a 1-wide, 2-tall column (padded to 2x2, column 0 after centring); the bright
    # pixel, right of the stored row, ends at the bottom.
    torch.testing.assert_close(out[:, 0], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out[:, 1], torch.zeros(2))
