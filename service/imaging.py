"""Upload bytes -> uint8 RGB pixels (+ alpha) and back, with every failure a clear client error.

Alpha: the network relights RGB only. An upload's alpha channel (RGBA, LA, palette
transparency) is carried over unchanged to PNG and WebP answers; JPEG answers drop it.
Animated GIF/APNG/WebP: the first frame is relit. EXIF orientation is applied first, so
the answer is upright the way a viewer shows the upload.
"""

import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Our own pixel limit (checked from the header) comes first; Pillow's bomb check stays as a backstop.
Image.MAX_IMAGE_PIXELS = None

FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
OutputFormat = Literal["png", "jpeg", "webp"]
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class ImageError(Exception):
    """A problem with the upload; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class DecodedImage:
    rgb: np.ndarray  # uint8 (H, W, 3)
    alpha: np.ndarray | None  # uint8 (H, W) or None
    source_format: str


def wide_to_uint8(image: Image.Image) -> np.ndarray:
    """16-bit or 32-bit single-channel images -> uint8, keeping the full 16-bit range."""
    values = np.asarray(image, dtype=np.float64)
    # 16-bit integers span 0..65535; float images are taken as 0..1 when they fit there.
    unit_float = image.mode == "F" and values.max() <= 1.0
    values = values * 255.0 if unit_float else values / 257.0
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


# Leading bytes of formats Pillow reads: a file that starts like one of them but does not open is
# a broken image (400), not a file of the wrong type (415).
SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF", b"BM": "BMP",
    b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
}  # fmt: skip


def claimed_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in SIGNATURES.items() if data.startswith(magic)), None)


def open_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.format == "PNG":
            # Pillow skips the CRCs of image data when decoding; verify() checks every chunk.
            image.verify()
            image = Image.open(io.BytesIO(data))
        return image
    except UnidentifiedImageError:
        claimed = claimed_format(data)
        if claimed:
            raise ImageError(400, f"the file starts like a {claimed} image but its header is invalid") from None
        raise ImageError(
            415, "the upload is not an image in a format this service reads (PNG, JPEG, WebP, ...)"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
        raise ImageError(400, f"the image header or a checksum is broken: {error}") from None


def decode(data: bytes, max_pixels: int, admit: Callable[[int, int], None] | None = None) -> DecodedImage:
    """`admit(height, width)` runs once the header is read and before the pixels are; it may raise to refuse."""
    if not data:
        raise ImageError(400, "the uploaded file is empty")
    image = open_image(data)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(400, f"the image is {width}x{height} pixels; both sides must be at least 1")
    if width * height > max_pixels:
        raise ImageError(
            413, f"the image is {width}x{height} = {width * height} pixels; this service takes at most {max_pixels}"
        )
    if admit is not None:
        admit(height, width)
    source_format = image.format or "unknown"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return split_channels(image, source_format)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise ImageError(400, f"the image data cannot be decoded (truncated or corrupt?): {error}") from None


def split_channels(image: Image.Image, source_format: str) -> DecodedImage:
    alpha = None
    if image.mode in WIDE_MODES:
        grey = wide_to_uint8(image)
        return DecodedImage(np.repeat(grey[..., None], 3, axis=-1), None, source_format)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        image = image.convert("RGBA")
        rgba = np.asarray(image)
        return DecodedImage(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), source_format)
    return DecodedImage(np.asarray(image.convert("RGB")), alpha, source_format)


def encode(rgb: np.ndarray, alpha: np.ndarray | None, image_format: str) -> bytes:
    """Fast settings: encoding a 1024x1024 answer must cost little next to the model."""
    if alpha is not None and image_format != "jpeg":
        image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    else:
        image = Image.fromarray(rgb, "RGB")
    buffer = io.BytesIO()
    if image_format == "png":
        image.save(buffer, "PNG", compress_level=1)
    elif image_format == "jpeg":
        image.save(buffer, "JPEG", quality=90)
    else:
        image.save(buffer, "WEBP", quality=90, method=0)
    return buffer.getvalue()


def choose_format(query: str | None, accept: str | None) -> str:
    """?format= wins; else the first of png/jpeg/webp the Accept header names; else PNG."""
    if query is not None:
        return query
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        for name, mime in FORMATS.items():
            if media == mime:
                return name
    return "png"
