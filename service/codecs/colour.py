"""Colour management with Pillow's ImageCms: the network sees sRGB, the answer keeps the upload's colour space.

An upload with an embedded RGB profile (Adobe RGB, Display P3, ...) is converted to sRGB
before the network, which was trained on sRGB pixels, and the relit pixels are converted
back and carry the same profile, so the photo keeps its colour space. An upload in another
colour model with a profile (CMYK, greyscale) is converted to sRGB and answered in sRGB with
the sRGB profile embedded. A profile that cannot be read is ignored with a log line: the
pixels are taken as sRGB and the profile's bytes go back unchanged. No profile: sRGB.
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
    """The image in sRGB (mode RGB, or RGBA when it has alpha) and how its answer goes back."""
    icc = image.info.get("icc_profile")
    if not icc:
        return image, AnswerColour()
    alpha = image.getchannel("A") if "A" in image.getbands() else None
    base_mode = {"RGBA": "RGB", "LA": "L", "La": "L", "RGBa": "RGB", "PA": "RGB", "P": "RGB"}.get(
        image.mode, image.mode
    )
    if base_mode not in ("RGB", "L", "CMYK"):
        return image, AnswerColour(icc)
    base = image.convert(base_mode) if image.mode != base_mode else image
    forward = transform(icc, base_mode, True)
    if forward is None:
        return image, AnswerColour(icc)
    converted = ImageCms.applyTransform(base, forward)
    if alpha is not None:
        converted.putalpha(alpha)
    if base_mode == "RGB":
        return converted, AnswerColour(icc, convert_back=True)
    return converted, AnswerColour(SRGB_ICC)


def from_srgb(rgb: np.ndarray, colour: AnswerColour) -> np.ndarray:
    """The relit sRGB pixels in the upload's colour space."""
    back = transform(colour.icc, "RGB", False) if colour.convert_back and colour.icc else None
    if back is None:
        return rgb
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb, "RGB"), back))
