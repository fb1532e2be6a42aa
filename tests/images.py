"""Real image bytes for the service tests."""

import io

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
