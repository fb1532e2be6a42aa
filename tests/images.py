"""Real image bytes for the service tests."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth picture with some structure, different for every seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    phase = rng.uniform(0, 6, 3)
    channels = [0.5 + 0.4 * np.sin(6 * xx + 4 * yy * (c + 1) + phase[c]) for c in range(3)]
    return (np.stack(channels, -1) * 255).astype(np.uint8)


def encode(pixels: np.ndarray, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format, **options)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with a tiny IDAT: the shape of a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def png_with_bad_crc(pixels: np.ndarray) -> bytes:
    data = encode(pixels)
    at = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    crc = at + 4 + length
    return data[:crc] + bytes([data[crc] ^ 0xFF]) + data[crc + 1 :]


def animated(pixels_list: list[np.ndarray], image_format: str) -> bytes:
    frames = [Image.fromarray(p) for p in pixels_list]
    buffer = io.BytesIO()
    frames[0].save(buffer, image_format, save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def with_exif_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def converted(pixels: np.ndarray, mode: str, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, image_format, **options)
    return buffer.getvalue()


def sixteen_bit_grey(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(height * width).reshape(height, width) * 97 % 65536).astype(np.uint16)).save(
        buffer, "PNG"
    )
    return buffer.getvalue()
