"""Upload bytes -> uint8 sRGB pixels (+ alpha) and back, with every failure a clear client error.

Alpha: the network relights RGB only. An upload's alpha channel (RGBA, LA, a palette's or a key colour's
transparency, with or without a colour profile) is carried over unchanged to PNG, WebP, AVIF and HEIC answers;
JPEG answers drop it. EXIF orientation is applied first, so the answer is upright the way a viewer shows the
upload.

One picture per upload: the one the file opens at, which is what viewers show: HEIF's primary image (not
necessarily its first), an animation's first frame (GIF, APNG, WebP, AVIF), a TIFF's first page, an MPO's
first image, a PSD's composite. It is sized from its header before anything is decoded (open_upload, for the
pixel limit and admission), and decode_opened refuses pixels that come out at another size, so what is admitted
is what is relit.

What a photo carries comes back with it, bounded: its colour space and ICC profile (service.codecs.colour), and
EXIF, DPI, XMP and PNG text where the answer's format holds them (service.codecs.metadata). HEIC/HEIF is read
through service.codecs.heif, AVIF by Pillow itself (libavif), both with the same orientation, colour and
metadata handling as JPEG.

Errors: any failure of a decoder on a file (Pillow's plugins raise many types for broken files: struct.error,
IndexError, KeyError for an unknown PSD mode, RuntimeError from libavif, ...) is the file's, a 400 in our own
words naming the format; the decoder's message goes to the log.
"""

import io
import logging
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import EpsImagePlugin, Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from service.codecs import heif
from service.codecs.colour import from_srgb, to_srgb
from service.codecs.embedded_exif import mend
from service.codecs.fastjpeg import decode_jpeg
from service.codecs.fastpng import encode_png
from service.codecs.limits import fits, limit_text
from service.codecs.metadata import (
    ORIENTATION,
    READ_TEXT_LIMIT,
    Metadata,
    carried,
    cost_bytes,
    save_options,
    writable_exif,
)

log = logging.getLogger("relight.imaging")

# Our own pixel limit (checked from the header) comes first, and the decoded size is checked against the header.
Image.MAX_IMAGE_PIXELS = None

# Answer format -> Pillow's writer and its settings. Fast ones: encoding a 1024x1024 answer must cost little next
# to the model (AVIF at libavif's fastest speed, HEIC: service.codecs.heif).
WRITERS = {
    "png": ("PNG", {"compress_level": 1}),
    "jpeg": ("JPEG", {"quality": 90}),
    "webp": ("WEBP", {"quality": 90, "method": 0}),
    "avif": ("AVIF", {"quality": 90, "speed": 10}),
    "heic": (heif.FORMAT, heif.SAVE_OPTIONS),
}
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class ImageError(Exception):
    """A problem with the upload; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class DecodedImage:
    """An upload's pixels, upright (EXIF orientation applied), and what goes back with them.

    `rgb` is uint8 (H, W, 3) sRGB, converted from the upload's colour profile where it has one (none: taken as
    sRGB); `metadata.colour` says which profile the answer embeds and whether encode converts back to it. 16-bit
    and float greyscale is scaled to 0..255 and repeated into the three channels. `alpha` is uint8 (H, W), the
    same H and W, or None when the upload has no transparency. `source_format` is the upload's format as Pillow
    names it ("JPEG", "MPO", "PNG", "HEIF"; "unknown" when Pillow gives none), not the lower-case answer format
    ("jpeg", "png", "heic") that encode's `image_format` takes: service.codecs.formats.same_format maps one to
    the other ("MPO" -> "jpeg"). `metadata` holds the colour space, EXIF, DPI, XMP and PNG text, each already
    within its bound.
    """

    rgb: np.ndarray  # uint8 (H, W, 3), sRGB
    alpha: np.ndarray | None  # uint8 (H, W) or None
    source_format: str  # Pillow's format name ("JPEG", "MPO"), not an answer format
    metadata: Metadata = field(default_factory=Metadata)


@dataclass
class Upload:
    """An upload whose header has been read and checked (open_upload), not yet decoded (decode_opened)."""

    image: Image.Image
    file_bytes: int
    max_bytes: int | None  # what the file and its metadata may take together; None: unbounded

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    @property
    def source_format(self) -> str:
        return self.image.format or "unknown"


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
    b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"8BPS": "PSD",
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
        return open_verified(data)
    except Exception as error:  # whatever a plugin raises on a broken header (see the module's docstring)
        mended = mend(data) if claimed_format(data) == "AVIF" else None  # EXIF Pillow's AVIF reader fails on
        if mended is not None:
            try:
                return open_verified(mended)
            except Exception:  # broken beyond its EXIF: the first error is the one to report
                pass
        if isinstance(error, UnidentifiedImageError):
            if unread := unread_variant(data):
                raise ImageError(415, f"{unread} are not read by this service; send PNG, JPEG, WebP, ...") from None
            if claimed := claimed_format(data):
                raise ImageError(400, f"the file looks like {claimed} but its header is invalid") from None
            raise ImageError(
                415, "the upload is not an image in a format this service reads (PNG, JPEG, WebP, HEIC, AVIF, ...)"
            ) from None
        kind = f"{claimed} image" if (claimed := claimed_format(data)) else "image"
        raise decoder_error(error, f"the {kind}'s header or a checksum is broken") from None


def unread_variant(data: bytes) -> str | None:
    """The name of a valid kind of file that Pillow identifies but does not read, for a 415: Photoshop's
    16 and 32-bit documents and its large document format (PSB)."""
    if data.startswith(b"8BPS") and len(data) >= 26:
        version, depth = int.from_bytes(data[4:6], "big"), int.from_bytes(data[22:24], "big")
        if version == 2:
            return "Photoshop large documents (PSB)"
        if version == 1 and depth in (16, 32):
            return f"Photoshop documents of {depth} bits per channel"
    return None


def not_decoded_here(image: Image.Image) -> bool:
    """Formats Pillow identifies but needs a handler or a program for, which this installation lacks: its stub
    plugins (BUFR, GRIB, HDF5, WMF outside Windows) and EPS without Ghostscript."""
    stub = isinstance(image, ImageFile.StubImageFile) and image._handler is None
    return stub or (image.format == "EPS" and not EpsImagePlugin.has_ghostscript())


def open_verified(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    if image.format == "PNG":
        # Pillow skips the CRCs of image data when decoding; verify() checks every chunk.
        image.verify()
        image = Image.open(io.BytesIO(data))
    return image


def decoder_error(error: Exception, detail: str) -> ImageError:
    """The ImageError for a decoder's `error`: 413 for PNG text past Pillow's bound (metadata.READ_TEXT_LIMIT),
    else 400 with `detail`; the decoder's own message goes to the log."""
    log.info("upload refused: %s (%s: %s)", detail, type(error).__name__, error)
    if isinstance(error, ValueError) and "MAX_TEXT_" in str(error):  # PngImagePlugin's text bounds
        return ImageError(413, f"the PNG's text chunks expand to more than this service reads ({READ_TEXT_LIMIT} "
                               "bytes in all, 1 MB each)")  # fmt: skip
    return ImageError(400, detail)


def decode(data: bytes, max_pixels: int, max_bytes: int | None = None) -> DecodedImage:
    """An upload's bytes to sRGB uint8 (H, W, 3) pixels with its alpha and metadata kept aside: open_upload (the
    header, checked against `max_pixels` width x height and `max_bytes`), then decode_opened. Raises ImageError
    (its status: 400, 413, 415, 422) for what cannot be relit."""
    return decode_opened(open_upload(data, max_pixels, max_bytes))


def open_upload(data: bytes, max_pixels: int, max_bytes: int | None = None) -> Upload:
    """Read the header and check the size, without decoding the pixels (admission looks at the size next).

    413 when the image has more than `max_pixels` pixels, or when the file's bytes and the metadata read so far
    come to more than `max_bytes`.
    """
    if not data:
        raise ImageError(400, "the uploaded file is empty")
    upload = Upload(open_image(data), len(data), max_bytes)
    if not_decoded_here(upload.image):
        raise ImageError(415, f"{upload.source_format} files are not decoded by this installation; send PNG, JPEG, ...")
    width, height = upload.width, upload.height
    if width < 1 or height < 1:
        raise ImageError(400, f"the image is {width}x{height} pixels; both sides must be at least 1")
    if width * height > max_pixels:
        raise ImageError(
            413, f"the image is {width}x{height} = {width * height} pixels; this service takes at most {max_pixels}"
        )
    check_cost(upload)
    return upload


def check_cost(upload: Upload) -> None:
    """413 when the file and the metadata Pillow holds for it take more than the upload limit."""
    if upload.max_bytes is None:
        return
    metadata = cost_bytes(upload.image)
    if upload.file_bytes + metadata > upload.max_bytes:
        raise ImageError(
            413,
            f"the file's {upload.file_bytes} bytes and the {metadata} bytes its metadata expands to are more than "
            f"this service accepts ({upload.max_bytes} bytes)",
        )


def decode_opened(upload: Upload) -> DecodedImage:
    """The pixels of an opened upload in sRGB (+ alpha), upright, with what comes back with them."""
    image, kind = upload.image, upload.source_format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = plain_jpeg(upload)
        if fast is not None:
            return fast
        try:
            image.load()
        except Exception as error:  # whatever a decoder raises on broken data (see the module's docstring)
            raise decoder_error(error, f"the {kind} image data cannot be decoded (truncated or corrupt?)") from None
        check_cost(upload)  # a PNG's chunks after its pixels are read with them
        exif = writable_exif(image)  # before exif_transpose, which writes the EXIF back
        text = dict(image.text) if image.format == "PNG" else {}  # after load(): no seeking through an APNG
        try:
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when already upright
            decoded = split_channels(image, kind)
        except (OSError, ValueError, ImageCms.PyCMSError) as error:  # Pillow cannot convert this mode or profile
            raise decoder_error(error, f"the {kind} image's pixels cannot be converted to RGB") from None
        decoded.metadata = replace(carried(image, exif, text), colour=decoded.metadata.colour)
    check_size(upload, decoded.rgb)
    return decoded


def check_size(upload: Upload, rgb: np.ndarray) -> None:
    """400 unless the pixels have the size the header declared (either way round: EXIF orientation turns them)."""
    if sorted(rgb.shape[:2]) != sorted((upload.height, upload.width)):
        raise ImageError(
            400,
            f"the {upload.source_format} image decodes to {rgb.shape[1]}x{rgb.shape[0]} pixels but its header "
            f"declares {upload.width}x{upload.height}",
        )


def plain_jpeg(upload: Upload) -> DecodedImage | None:
    """An 8-bit RGB JPEG with no profile and no rotation, decoded by service.codecs.fastjpeg; None otherwise.

    Pillow has read every marker (EXIF, XMP, DPI) from the header already, so the metadata is the same.
    """
    image = upload.image
    plain = image.format == "JPEG" and image.mode == "RGB" and not image.info.get("icc_profile")
    if not plain:
        return None
    exif = writable_exif(image)
    if exif.get(ORIENTATION, 1) != 1:
        return None
    rgb = decode_jpeg(image.fp.getvalue())
    if rgb is None:
        return None
    check_size(upload, rgb)
    return DecodedImage(rgb, None, image.format, carried(image, exif, {}))


def alpha_channel(image: Image.Image) -> np.ndarray | None:
    """uint8 (H, W) alpha of an image with an alpha band or with transparency (a palette's, a key colour); None
    when it has neither."""
    if "A" in image.getbands():
        return np.asarray(image.getchannel("A"))
    if "transparency" in image.info:
        return np.asarray(image.convert("RGBA").getchannel("A"))
    return None


def split_channels(image: Image.Image, source_format: str) -> DecodedImage:
    alpha = alpha_channel(image)
    if image.mode in WIDE_MODES:
        grey = wide_to_uint8(image)
        return DecodedImage(np.repeat(grey[..., None], 3, axis=-1), alpha, source_format)
    rgb, colour = to_srgb(image)
    return DecodedImage(np.asarray(rgb), alpha, source_format, Metadata(colour=colour))


def encode(rgb: np.ndarray, alpha: np.ndarray | None, image_format: str, metadata: Metadata | None = None) -> bytes:
    """uint8 (H, W, 3) sRGB pixels (+ uint8 (H, W) alpha) -> bytes in `image_format` (a key of WRITERS).

    Raises ImageError (422) when `image_format` cannot hold this size (service.codecs.limits).
    """
    height, width = rgb.shape[:2]
    if not fits(image_format, width, height):
        raise ImageError(422, f"{limit_text(image_format)}; this image is {width}x{height}")
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
