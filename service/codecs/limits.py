"""The sizes each answer format can encode, so that the answer format is settled before an upload is queued.

Measured at the boundaries with the encoders the wheels carry (Pillow 13: libjpeg-turbo, libwebp, libavif with
aom; pillow-heif 1.8: libheif 1.23 with x265 4.3); tests/test_hostile_uploads.py encodes at each limit and one
pixel past it, so a wheel that moves one fails there:

    PNG    2^31 - 1 pixels a side (the PNG specification)
    JPEG   65,500 a side (libjpeg-turbo's JPEG_MAX_DIMENSION)
    WebP   16,383 a side (libwebp's WEBP_MAX_DIMENSION)
    AVIF   32,768 a side: libavif writes larger files, but its decoder (ours, browsers') refuses them by default
    HEIC   65,520 a side (x265 pads to 16); and with a side under 32 pixels, at most 4,208 on the other
           (x265 cannot be opened for such strips)
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class SideLimit:
    """Both sides at most `max_side` pixels; when the short side is under `narrow_below`, the long side at most
    `narrow_max_side`."""

    max_side: int
    narrow_below: int = 0
    narrow_max_side: int = 0

    def fits(self, width: int, height: int) -> bool:
        short, long = sorted((width, height))
        return long <= self.max_side and (short >= self.narrow_below or long <= self.narrow_max_side)

    def describe(self) -> str:
        text = f"at most {self.max_side} pixels a side"
        if self.narrow_below:
            text += f", and at most {self.narrow_max_side} when the other side is under {self.narrow_below}"
        return text


LIMITS = {
    "png": SideLimit(2**31 - 1),
    "jpeg": SideLimit(65500),
    "webp": SideLimit(16383),
    "avif": SideLimit(32768),
    "heic": SideLimit(65520, narrow_below=32, narrow_max_side=4208),
}
NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "heic": "HEIC"}


def fits(image_format: str, width: int, height: int) -> bool:
    """Whether a `width` x `height` image can be answered as `image_format` (a key of LIMITS)."""
    return LIMITS[image_format].fits(width, height)


def limit_text(image_format: str) -> str:
    """`WebP answers hold at most 16383 pixels a side`, for error messages."""
    return f"{NAMES[image_format]} answers hold {LIMITS[image_format].describe()}"
