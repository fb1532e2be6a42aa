"""Colour management with Pillow's ImageCms: the network sees sRGB, the answer keeps the upload's colour space.

An upload with an embedded RGB profile (Adobe RGB, Display P3, ...) is converted to sRGB
before the network, which was trained on sRGB pixels, and the relit pixels are converted
back and carry the same profile, so the photo keeps its colour space. An upload in another
colour model with a profile (CMYK, greyscale) is converted to sRGB and answered in sRGB with
the sRGB profile embedded. A profile that cannot be read is ignored with a log line: the
pixels are taken as sRGB and the profile's bytes go back unchanged. No profile: sRGB (CIELAB pixels, from
PSD or TIFF, through the CIELAB D50 profile). A profile larger than ICC_LIMIT is no camera's or screen's: it is
neither read nor carried back (the transforms of 16 profiles are kept, so this bounds what they hold).
"""

import io
import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageCms

log = logging.getLogger("relight.colour")

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
SRGB_ICC = SRGB.tobytes()
INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
LAB_TO_SRGB = ImageCms.buildTransform(ImageCms.createProfile("LAB"), SRGB, "LAB", "RGB", INTENT)
# Camera and screen profiles are a few kB; CMYK printing profiles, the largest in use, 0.5-2 MB.
ICC_LIMIT = 4 << 20
# Modes with alpha or a palette -> the colour model their profile describes.
BASE_MODES = {"RGBA": "RGB", "LA": "L", "La": "L", "RGBa": "RGB", "PA": "RGB", "P": "RGB", "RGBX": "RGB", "1": "L"}


@dataclass(frozen=True)
class AnswerColour:
    """How the relit sRGB pixels go back: the profile to embed and whether to convert to it first."""

    icc: bytes | None = None
    convert_back: bool = False


def read_profile(icc: bytes) -> ImageCms.ImageCmsProfile | None:
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError) as error:
        log.warning("ignoring an embedded ICC profile that cannot be read (%s)", error)
        return None


@lru_cache(maxsize=16)
def transform(icc: bytes, in_mode: str, to_srgb: bool) -> ImageCms.ImageCmsTransform | None:
    """Built once per profile: building costs more than applying it to a photo."""
    profile = read_profile(icc)
    if profile is None:
        return None
    try:
        if to_srgb:
            return ImageCms.buildTransform(profile, SRGB, in_mode, "RGB", INTENT)
        return ImageCms.buildTransform(SRGB, profile, "RGB", "RGB", INTENT)
    except ImageCms.PyCMSError as error:
        log.warning("ignoring an ICC profile that does not fit %s pixels (%s)", in_mode, error)
        return None


def to_srgb(image: Image.Image) -> tuple[Image.Image, AnswerColour]:
    """The image's colours as sRGB (mode RGB; any alpha is the caller's) and how its answer goes back."""
    base_mode = BASE_MODES.get(image.mode, image.mode)
    if base_mode == "LAB":  # device-independent already: a profile beside it describes nothing more
        return ImageCms.applyTransform(image, LAB_TO_SRGB), AnswerColour(SRGB_ICC)
    icc = image.info.get("icc_profile")
    if icc and len(icc) > ICC_LIMIT:
        log.info("ignoring an ICC profile of %d bytes, more than %d", len(icc), ICC_LIMIT)
        icc = None
    if not icc:
        return rgb(image), AnswerColour()
    if base_mode not in ("RGB", "L", "CMYK"):
        return rgb(image), AnswerColour(icc)
    base = image.convert(base_mode) if image.mode != base_mode else image
    forward = transform(icc, base_mode, True)
    if forward is None:
        return rgb(base), AnswerColour(icc)
    converted = ImageCms.applyTransform(base, forward)
    if base_mode == "RGB":
        return converted, AnswerColour(icc, convert_back=True)
    return converted, AnswerColour(SRGB_ICC)


def rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def from_srgb(rgb: np.ndarray, colour: AnswerColour) -> np.ndarray:
    """The relit sRGB pixels in the upload's colour space."""
    back = transform(colour.icc, "RGB", False) if colour.convert_back and colour.icc else None
    if back is None:
        return rgb
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb, "RGB"), back))
