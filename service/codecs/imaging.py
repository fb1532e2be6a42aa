"""Upload bytes -> uint8 sRGB pixels (+ alpha) and back, with every failure a clear client error.

Alpha: the network relights RGB only. An upload's alpha channel (RGBA, LA, palette
transparency) is carried over unchanged to PNG, WebP, AVIF and HEIC answers; JPEG answers drop it.
Animated GIF/APNG/WebP: the first frame is relit. EXIF orientation is applied first, so
the answer is upright the way a viewer shows the upload.

What a photo carries comes back with it: its colour space and ICC profile (service.codecs.colour),
its EXIF (orientation set to 1, since it is applied), DPI, XMP, and a PNG's text chunks where
the answer's format can hold them (only PNG has text chunks; only PNG and JPEG hold DPI).
HEIC/HEIF is read through service.codecs.heif, AVIF by Pillow itself (libavif), both with the
same orientation, colour and metadata handling as JPEG.
"""

import io
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from service.codecs import heif
from service.codecs.colour import AnswerColour, from_srgb, to_srgb
from service.codecs.fastjpeg import decode_jpeg
from service.codecs.fastpng import encode_png

# Our own pixel limit (checked from the header) comes first; Pillow's bomb check stays as a backstop.
Image.MAX_IMAGE_PIXELS = None

XMP_KEY = "XML:com.adobe.xmp"
ORIENTATION = 0x0112
# Answer format -> Pillow's writer and its settings. Fast ones: encoding a 1024x1024 answer must cost little next
# to the model (AVIF at libavif's fastest speed, HEIC: service.codecs.heif).
WRITERS = {
    "png": ("PNG", {"compress_level": 1}),
    "jpeg": ("JPEG", {"quality": 90}),
    "webp": ("WEBP", {"quality": 90, "method": 0}),
    "avif": ("AVIF", {"quality": 90, "speed": 10}),
    "heic": (heif.FORMAT, heif.SAVE_OPTIONS),
}
DPI_FORMATS = {"png", "jpeg"}
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class ImageError(Exception):
    """A problem with the upload; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class Metadata:
    colour: AnswerColour = field(default_factory=AnswerColour)
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)  # PNG tEXt/iTXt/zTXt chunks


@dataclass
class DecodedImage:
    rgb: np.ndarray  # uint8 (H, W, 3), sRGB
    alpha: np.ndarray | None  # uint8 (H, W) or None
    source_format: str
    metadata: Metadata = field(default_factory=Metadata)


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


# ISO base media files (HEIF, AVIF) open with an `ftyp` box whose major brand names the kind.
FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC", b"heis": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC",
               b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}  # fmt: skip


def claimed_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp" and data[8:12] in FTYP_BRANDS:
        return FTYP_BRANDS[data[8:12]]
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
            415, "the upload is not an image in a format this service reads (PNG, JPEG, WebP, HEIC, AVIF, ...)"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
        raise ImageError(400, f"the image header or a checksum is broken: {error}") from None


def decode(data: bytes, max_pixels: int) -> DecodedImage:
    return decode_opened(open_upload(data, max_pixels))


def open_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header and check the size, without decoding the pixels (admission looks at `.size` next)."""
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
    return image


def decode_opened(image: Image.Image) -> DecodedImage:
    source_format = image.format or "unknown"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = plain_jpeg(image)
            if fast is not None:
                return fast
            image.seek(0)
            image.load()
            text = dict(getattr(image, "text", None) or {})  # PNG chunks
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when already upright
            metadata = carried_metadata(image, text)
            if image.mode not in WIDE_MODES:
                image, metadata.colour = to_srgb(image)
            decoded = split_channels(image, source_format)
            decoded.metadata = metadata
            return decoded
    except ImageError:
        raise
    # RuntimeError: what Pillow's AVIF decoder raises for corrupt image data.
    except (OSError, ValueError, SyntaxError, EOFError, RuntimeError, Image.DecompressionBombError) as error:
        raise ImageError(400, f"the image data cannot be decoded (truncated or corrupt?): {error}") from None


def plain_jpeg(image: Image.Image) -> DecodedImage | None:
    """An 8-bit RGB JPEG with no profile and no rotation, decoded by service.codecs.fastjpeg; None otherwise.

    Pillow has read every marker (EXIF, XMP, DPI) from the header already, so the metadata is the same.
    """
    plain = image.format == "JPEG" and image.mode == "RGB" and not image.info.get("icc_profile")
    if not plain or image.getexif().get(ORIENTATION, 1) != 1:
        return None
    rgb = decode_jpeg(image.fp.getvalue())
    if rgb is None:
        return None
    return DecodedImage(rgb, None, image.format, carried_metadata(image, {}))


def carried_metadata(image: Image.Image, text: dict[str, str]) -> Metadata:
    """What goes back with the answer; `image` is already upright, so its EXIF orientation becomes 1."""
    exif = image.getexif()
    if len(exif):
        exif[ORIENTATION] = 1
    xmp = image.info.get("xmp") or text.pop(XMP_KEY, None)
    dpi = image.info.get("dpi")
    return Metadata(
        exif=exif.tobytes() if len(exif) else None,
        dpi=tuple(float(d) for d in dpi) if dpi else None,
        xmp=xmp.encode() if isinstance(xmp, str) else xmp,
        text=text,
    )


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
    return DecodedImage(np.asarray(image if image.mode == "RGB" else image.convert("RGB")), alpha, source_format)


def encode(rgb: np.ndarray, alpha: np.ndarray | None, image_format: str, metadata: Metadata | None = None) -> bytes:
    """uint8 (H, W, 3) sRGB pixels (+ uint8 (H, W) alpha) -> bytes in `image_format` (a key of WRITERS)."""
    metadata = metadata or Metadata()
    rgb = from_srgb(rgb, metadata.colour)
    options = save_options(image_format, metadata)
    if image_format == "png" and not options:
        fast = encode_png(rgb if alpha is None else np.dstack([rgb, alpha]))
        if fast is not None:
            return fast
    if alpha is not None and image_format != "jpeg":
        image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    else:
        image = Image.fromarray(rgb, "RGB")
    writer, settings = WRITERS[image_format]
    buffer = io.BytesIO()
    image.save(buffer, writer, **settings, **options)
    return buffer.getvalue()


def save_options(image_format: str, metadata: Metadata) -> dict:
    options: dict = {}
    if metadata.colour.icc:
        options["icc_profile"] = metadata.colour.icc
    if metadata.exif:
        options["exif"] = metadata.exif
    if metadata.dpi and image_format in DPI_FORMATS:
        options["dpi"] = metadata.dpi
    if image_format == "png":
        if metadata.text or metadata.xmp:
            info = PngImagePlugin.PngInfo()
            for key, value in metadata.text.items():
                info.add_itxt(key, str(value))
            if metadata.xmp:
                info.add_itxt(XMP_KEY, metadata.xmp.decode("utf-8", "replace"))
            options["pnginfo"] = info
    elif metadata.xmp:
        options["xmp"] = metadata.xmp
    return options
