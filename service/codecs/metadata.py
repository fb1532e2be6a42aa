"""What comes back with an answer besides its pixels: EXIF, XMP, DPI and PNG text, bounded, and what it costs.

Carried back where the answer's format holds it: EXIF (its orientation set to 1, since the pixels are turned
upright when decoded) and XMP in every answer format, DPI in PNG and JPEG, and a PNG's text chunks (tEXt, zTXt
and iTXt, nothing else) in PNG answers. The colour profile: service.codecs.colour.

Bounds: every item must fit where the smallest answer format keeps it, one JPEG APP1 segment (65,533 bytes,
Pillow's JpegImagePlugin.MAX_BYTES_IN_MARKER, less the segment's own signature), so no answer format ever refuses
what an upload brought; text chunks come back up to TEXT_LIMIT bytes in all, in the upload's order. Anything
larger is left out with a log line, never refused: the pixels are the answer.

EXIF that Pillow reads but cannot write back (a value that does not fit its tag's type: a float in an ASCII tag,
a negative number in an unsigned one, ...) loses those tags, one by one; the rest comes back.

Cost: what an upload's metadata takes once read (text chunks decompressed) is counted with its bytes against the
upload limit (service.codecs.imaging), and Pillow decompresses at most READ_TEXT_LIMIT of a PNG's text at all.
"""

import logging
from dataclasses import dataclass, field

from PIL import ExifTags, Image, PngImagePlugin, TiffImagePlugin

from service.codecs.colour import AnswerColour

log = logging.getLogger("relight.metadata")

EXIF_LIMIT = 65533  # b"Exif\0\0" and the TIFF structure: one APP1 segment (JpegImagePlugin.MAX_BYTES_IN_MARKER)
XMP_LIMIT = 65533 - 29  # less its b"http://ns.adobe.com/xap/1.0/\0" signature
TEXT_LIMIT = 64 * 1024  # PNG text carried back: keys and values, UTF-8
# What Pillow decompresses of a PNG's text chunks while reading it (its default: 64 MB): beyond it the upload is
# refused (413) before any of it is kept.
READ_TEXT_LIMIT = 8 * 1024 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = READ_TEXT_LIMIT

XMP_KEY = "XML:com.adobe.xmp"  # the PNG iTXt keyword of XMP
ORIENTATION = ExifTags.Base.Orientation
SUB_IFDS = (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)
DPI_FORMATS = {"png", "jpeg"}


@dataclass
class Metadata:
    """What goes back with the relit pixels; every item already within its bound."""

    colour: AnswerColour = field(default_factory=AnswerColour)
    exif: bytes | None = None  # b"Exif\0\0" + TIFF structure, at most EXIF_LIMIT bytes
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None  # at most XMP_LIMIT bytes
    text: dict[str, str] = field(default_factory=dict)  # PNG text chunks, at most TEXT_LIMIT bytes in all


def cost_bytes(image: Image.Image) -> int:
    """Bytes of metadata Pillow holds for `image` (text decompressed, profiles, EXIF, XMP, comments)."""
    return sum(len(value) for value in image.info.values() if isinstance(value, (bytes, str)))


def writable_exif(image: Image.Image) -> Image.Exif:
    """`image.getexif()`, with every tag Pillow cannot write back removed from it.

    The same cached object that ImageOps.exif_transpose reads and writes back, so call this first. EXIF that
    cannot be parsed at all comes back empty.
    """
    try:
        exif = image.getexif()
    except Exception as error:  # Pillow's TIFF parser on a broken header: no EXIF, the pixels are still good
        log.info("leaving out EXIF that cannot be read (%s: %s)", type(error).__name__, error)
        image.info.pop("exif", None)
        exif = image.getexif()  # Pillow's cached object, marked loaded: what it read before failing
        exif.clear()
        return exif
    if exif_bytes(exif) is not None:
        return exif
    if len(exif) > EXIF_LIMIT // 12:  # more 12-byte entries than an answer carries: no pruning worth its time
        exif.clear()
        return exif
    for tag in list(exif):
        if tag in SUB_IFDS:
            prune(exif, tag)
        elif not writable(tag, exif[tag]):
            log.info("leaving out EXIF tag 0x%04x: Pillow cannot write %r back", tag, exif[tag])
            del exif[tag]
    if exif_bytes(exif) is None:
        exif.clear()
    return exif


def prune(exif: Image.Exif, tag: int) -> None:
    """Remove the entries Pillow cannot write from sub-IFD `tag` and its Interop IFD, in place (get_ifd gives
    Pillow's own dicts, which tobytes() writes)."""
    try:
        directories = {tag: exif.get_ifd(tag)}
        if tag == ExifTags.IFD.Exif and ExifTags.IFD.Interop in directories[tag]:
            directories[ExifTags.IFD.Interop] = exif.get_ifd(ExifTags.IFD.Interop)
    except Exception:  # a sub-IFD pointer to nowhere (a negative offset, a list of them): the sub-IFD goes
        del exif[tag]
        return
    if sum(map(len, directories.values())) > EXIF_LIMIT // 12:  # could not come back anyway (writable_exif)
        for entries in directories.values():
            entries.clear()  # Pillow's cached dicts: tobytes() writes them even without their pointer
        del exif[tag]
        return
    for group, entries in directories.items():
        for inner in [inner for inner, value in entries.items() if not writable(inner, value, group)]:
            log.info("leaving out EXIF tag 0x%04x: Pillow cannot write %r back", inner, entries[inner])
            del entries[inner]


def writable(tag: int, value, group: int | None = None) -> bool:
    """Whether Pillow can write tag `tag` = `value` into an IFD (of sub-IFD `group`)."""
    directory = TiffImagePlugin.ImageFileDirectory_v2(group=group)
    try:
        directory[tag] = value
        directory.tobytes()
    except Exception:  # struct.error, TypeError, AttributeError, ValueError, ...: each a value that does not fit
        return False
    return True


def exif_bytes(exif: Image.Exif) -> bytes | None:
    """The EXIF as written into an answer; None if Pillow cannot write it."""
    try:
        return exif.tobytes()
    except Exception:  # see writable()
        return None


def carried(image: Image.Image, exif: Image.Exif, text: dict[str, str]) -> Metadata:
    """What goes back with the answer of `image`, decoded and upright; `exif` from writable_exif."""
    if len(exif):
        exif[ORIENTATION] = 1
    written = exif_bytes(exif) if len(exif) else None
    xmp = image.info.get("xmp") or image.info.get(XMP_KEY)
    xmp = xmp.encode() if isinstance(xmp, str) else xmp
    dpi = image.info.get("dpi")
    return Metadata(
        exif=within(written, EXIF_LIMIT, "EXIF"),
        dpi=valid_dpi(dpi),
        xmp=within(xmp, XMP_LIMIT, "XMP"),
        text=bounded_text(text),
    )


def within(value: bytes | None, limit: int, name: str) -> bytes | None:
    if value and len(value) > limit:
        log.info("leaving out %s of %d bytes: answers carry at most %d", name, len(value), limit)
        return None
    return value or None


def valid_dpi(dpi) -> tuple[float, float] | None:
    """The DPI as two positive finite numbers, else None (a broken pHYs or JFIF header gives 0 or NaN)."""
    try:
        x, y = (float(d) for d in dpi)
    except (TypeError, ValueError):
        return None
    return (x, y) if 0 < x < 1e6 and 0 < y < 1e6 else None


def bounded_text(text: dict[str, str]) -> dict[str, str]:
    """The PNG text chunks that fit TEXT_LIMIT, in order, with keywords PNG allows (1-79 Latin-1 characters)."""
    kept, used = {}, 0
    for key, value in text.items():
        value = str(value)
        size = len(key.encode("utf-8")) + len(value.encode("utf-8", "replace"))
        if key == XMP_KEY or not 0 < len(key) < 80 or not key.isprintable() or not is_latin1(key):
            continue
        if used + size > TEXT_LIMIT:
            log.info("leaving out PNG text %r of %d bytes: answers carry at most %d in all", key, size, TEXT_LIMIT)
            continue
        kept[key], used = value, used + size
    return kept


def is_latin1(text: str) -> bool:
    return all(ord(character) < 256 for character in text)


def save_options(image_format: str, metadata: Metadata) -> dict:
    """Pillow's save() keywords that write `metadata` into an `image_format` answer."""
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
                info.add_itxt(key, value.encode("utf-8", "replace").decode("utf-8"), zip=len(value) > 1024)
            if metadata.xmp:
                info.add_itxt(XMP_KEY, metadata.xmp.decode("utf-8", "replace"), zip=True)
            options["pnginfo"] = info
    elif metadata.xmp:
        options["xmp"] = metadata.xmp
    return options
