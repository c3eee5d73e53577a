"""Turn the bytes of a user's image file into a model input, refusing anything unsafe or unreadable.

The bytes come from outside (an app upload, a file on disk), so every failure -- not an image,
truncated, too large in bytes or in pixels -- is one :class:`CollabError` sentence. The pixel
count is checked from the file header before anything is decoded, so a small file announcing a
huge image (a decompression bomb) is refused without allocating it. Photos of current phones
(20-108 megapixels) are accepted and downscaled cheaply while decoding: JPEG's draft mode decodes
at 1/2, 1/4 or 1/8 scale directly, and other formats are box-reduced by an integer factor right
after decoding, so no full-size float copy is ever made.

Conversion to a run's input, in this order:

1. EXIF orientation is applied (phone photos come out upright).
2. Transparency is composited over a plain ``background`` (0 = black, 1 = white).
3. Colour to grey uses PIL's ITU-R 601 luma (``L = 0.299 R + 0.587 G + 0.114 B``); grey to
   colour repeats the grey channel. 16-bit and float images are scaled to [0, 1] first.
4. A non-square image is padded with ``background`` to a centred square (nothing is cropped or
   stretched), then resized to ``image_size`` with antialiased bilinear filtering.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps

from analysis.errors import CollabError

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 110_000_000  # a 108-megapixel phone photo passes; more is refused from the header
#: Decoding keeps at least this many times the model's input side before the final resize.
_OVERSAMPLE = 2
#: PIL modes that Image.reduce handles (a box filter over whole factor x factor blocks).
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "I", "F"}
#: PIL modes holding more than 8 bits per pixel, and the value that maps to 1.0.
_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "F": 1.0}


def _open(data: bytes, *, max_bytes: int, max_pixels: int, image_size: int) -> Image.Image:
    """Decode ``data`` after checking its byte size and announced pixel count, downscaled to
    no less than ``_OVERSAMPLE * image_size`` pixels a side where that is cheap."""
    if not data:
        raise CollabError("the uploaded file is empty; choose a PNG or JPEG image")
    if len(data) > max_bytes:
        raise CollabError(
            f"the image file is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB "
            "limit; upload a smaller or more compressed image"
        )
    try:
        with warnings.catch_warnings():  # our own pixel limit below replaces PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise CollabError(
            f"the image is too large (over {max_pixels / 1e6:.0f} megapixels); downscale it "
            "before uploading"
        ) from None
    except Exception:  # PIL raises many types for foreign bytes
        raise CollabError(
            "the uploaded file is not a readable image; upload a PNG, JPEG, BMP, GIF or WebP file"
        ) from None
    width, height = image.size
    if width * height > max_pixels or min(width, height) < 1:
        raise CollabError(
            f"the image is too large: {width}x{height} pixels ({width * height / 1e6:.0f} "
            f"megapixels), over the {max_pixels / 1e6:.0f} megapixel limit; downscale it before "
            "uploading"
        )
    keep = _OVERSAMPLE * image_size
    try:
        if image.format == "JPEG":
            image.draft(image.mode, (keep, keep))  # DCT-domain downscale: decodes far less
        image.load()
        factor = min(image.size) // keep
        if factor >= 2 and image.mode in _REDUCIBLE:
            image = image.reduce(factor)
    except Exception as exc:  # truncated or corrupt pixel data
        log.debug("image decode failed: %s", exc)
        raise CollabError(
            f"the {image.format or 'image'} file is truncated or corrupt; re-export it and upload "
            "it again"
        ) from None
    return image


def _to_array(image: Image.Image, *, in_chans: int, background: float) -> np.ndarray:
    """(H, W, in_chans) float32 in [0, 1] from any PIL mode."""
    if image.mode in _WIDE_MODES:
        grey = np.asarray(image, dtype=np.float32) / _WIDE_MODES[image.mode]
        grey = np.clip(np.nan_to_num(grey, nan=0.0), 0.0, 1.0)[..., None]
        return np.repeat(grey, in_chans, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        fill = Image.new("RGBA", rgba.size, (round(background * 255),) * 3 + (255,))
        image = Image.alpha_composite(fill, rgba)
    if in_chans == 1:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)[..., None]
    else:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return pixels / 255.0


def _square(pixels: np.ndarray, *, background: float) -> np.ndarray:
    """Pad (H, W, C) with ``background`` to a centred (S, S, C) square, S = max(H, W)."""
    height, width = pixels.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    out = np.full((side, side, pixels.shape[2]), background, dtype=np.float32)
    out[top : top + height, left : left + width] = pixels
    return out


def load_image(
    data: bytes,
    *,
    in_chans: int,
    image_size: int,
    background: float = 0.0,
    invert: bool = False,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """Decode an image file into a run's input format.

    Args:
        data: the file's bytes (PNG, JPEG, BMP, GIF, WebP, TIFF, ... anything PIL reads).
        in_chans: channels the model expects (1 grey, 3 RGB).
        image_size: side of the square model input in pixels.
        background: value of transparent pixels and of the square padding in the result, in
            [0, 1] (also with ``invert``).
        invert: return ``1 - image`` (e.g. black ink on white paper for a model trained on
            bright strokes over black, like the digits dataset).
        max_bytes: refuse larger files (default 64 MB).
        max_pixels: refuse images of more pixels than this, from the header (default 110 M).

    Returns:
        (in_chans, image_size, image_size) float32 tensor in [0, 1].

    Raises:
        CollabError: unreadable, empty, truncated, too large in bytes or in pixels.
    """
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    image = _open(data, max_bytes=max_bytes, max_pixels=max_pixels, image_size=image_size)
    image = ImageOps.exif_transpose(image) or image
    fill = (
        1.0 - background if invert else background
    )  # so that the fill is ``background`` after inverting
    pixels = _square(_to_array(image, in_chans=in_chans, background=fill), background=fill)
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # (1, C, S, S)
    if tensor.shape[-1] != image_size:
        tensor = torch.nn.functional.interpolate(
            tensor,
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    tensor = tensor[0].clamp(0.0, 1.0)
    return (1.0 - tensor) if invert else tensor.contiguous()
