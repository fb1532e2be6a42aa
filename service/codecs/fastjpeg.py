"""simplejpeg: libjpeg-turbo decoding straight into a numpy array, 1.5x Pillow's JPEG decode.

Same library as Pillow's decoder, same default DCT and upsampling, so the pixels are Pillow's
(a test compares them); the gain is the work around it: no PIL image to copy out of. It takes
the plain case only (8-bit RGB, no profile, upright; service.codecs.imaging decides) and strict mode,
so a truncated or corrupt file raises here as it does in Pillow. Any failure, the package
missing included, means Pillow decodes instead.
"""

import logging

import numpy as np

log = logging.getLogger("relight.fastjpeg")

try:
    import simplejpeg
except ImportError:  # a platform without its wheel
    simplejpeg = None


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """JPEG bytes -> uint8 (H, W, 3) RGB; None when simplejpeg cannot."""
    if simplejpeg is None:
        return None
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except Exception as error:  # a native decoder: whatever it raises, Pillow decides what the file is
        log.debug("simplejpeg declined (%s: %s); decoding with Pillow", type(error).__name__, error)
        return None
