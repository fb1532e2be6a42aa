"""The answer formats: their names as people write them, their media types and file suffixes, and which one an
answer gets.

An answer is PNG, JPEG, WebP, AVIF or HEIC (HEIC only where libheif can write it: service.codecs.heif).
`?format=` and the Accept header name one in any of the spellings people use, case-insensitively: the
format's name, its file suffixes with or without the dot (`jpg`, `JPG`, `.jpeg`, `jfif`, `heif`, `hif`),
its media type and the unofficial ones clients send (`image/jpg`, `image/pjpeg`, `image/x-png`, `image/heif`).
With neither, the answer is in the upload's own format where that is one of these, else PNG; HEIC
uploads are answered as JPEG where HEIC cannot be written. Which one an answer gets: service.codecs.negotiation.
"""

from PIL import Image

from service.codecs import heif

# Answer format -> Pillow's name of it, the answer's media type, the suffix its files get. HEIC is HEIF coded
# with HEVC: image/heic (image/heif names the family).
KNOWN = {
    "png": ("PNG", "image/png", ".png"),
    "jpeg": ("JPEG", "image/jpeg", ".jpg"),
    "webp": ("WEBP", "image/webp", ".webp"),
    "avif": ("AVIF", "image/avif", ".avif"),
    "heic": (heif.FORMAT, "image/heic", ".heic"),
}
# Spellings seen from clients that neither the format's name, its suffixes nor its media types cover.
UNOFFICIAL = {
    "png": ["image/x-png", "image/apng"],
    "jpeg": ["image/jpg", "image/pjpeg", "pjpeg", "image/jfif"],
    "webp": ["image/x-webp"],
    "avif": [],
    "heic": ["image/heif", "image/heic-sequence", "image/heif-sequence"],
}
# The answer formats this installation writes, and their media types.
WRITTEN = [name for name in KNOWN if name != "heic" or heif.CAN_ENCODE]
MEDIA_TYPES = {name: KNOWN[name][1] for name in WRITTEN}
# Pillow's name of an upload's format -> its answer's format when the client names none (MPO: phone JPEGs).
SAME_FORMAT = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "AVIF": "avif"}
SAME_FORMAT[heif.FORMAT] = "heic" if heif.CAN_ENCODE else "jpeg"

Image.init()
EXTENSIONS = Image.registered_extensions()  # ".jpg" -> "JPEG", HEIF's included
# File suffix -> the answer format written under it (".jpg", ".JPEG", ".jfif" -> "jpeg").
SUFFIX_FORMATS = {suffix: name for suffix, pillow in EXTENSIONS.items() for name in WRITTEN if KNOWN[name][0] == pillow}


def spellings(name: str) -> list[str]:
    """Every accepted spelling of format `name`, lower case: its name, Pillow's suffixes for it, its media types."""
    pillow, media, _ = KNOWN[name]
    suffixes = [suffix.lstrip(".") for suffix, written in EXTENSIONS.items() if written == pillow]
    return list(dict.fromkeys([name, *suffixes, media, Image.MIME.get(pillow, media).lower(), *UNOFFICIAL[name]]))


SPELLINGS = {spelling: name for name in KNOWN for spelling in spellings(name)}


def accepted_names() -> str:
    """The accepted spellings, for an error message: `png (apng, image/png, ...), jpeg (jpg, ...), ...`."""
    return ", ".join(f"{name} ({', '.join(spellings(name)[1:])})" for name in WRITTEN)


def known_format(spelling: str) -> str | None:
    """A format as a client wrote it (`JPG`, `.jpeg`, `image/jpg`, `heif`) -> the format (`jpeg`); None if unknown."""
    return SPELLINGS.get(spelling.strip().lower().removeprefix("."))


def format_named(spelling: str) -> str:
    """known_format, for ?format=: raises ValueError naming every accepted spelling when `spelling` names no format
    this installation writes."""
    name = known_format(spelling)
    if name is None:
        raise ValueError(f"unknown format {spelling!r}; this service answers in {accepted_names()}")
    if name not in MEDIA_TYPES:
        raise ValueError(
            f"{spelling!r} answers need libheif's HEVC encoder, which this installation lacks; "
            f"this service answers in {accepted_names()}"
        )
    return name


def same_format(source_format: str | None) -> str:
    """The answer format of an upload in Pillow's format `source_format` when the client names none."""
    return SAME_FORMAT.get(source_format or "", "png")


def answer_suffix(suffix: str) -> str:
    """A file's suffix -> its answer's: the same where that format is written, else the answer format's.

    `.JPG` -> `.JPG`, `.heic` -> `.heic` (`.jpg` where HEIC cannot be written), `.gif` -> `.png`.
    """
    if suffix.lower() in SUFFIX_FORMATS:
        return suffix
    return KNOWN[same_format(EXTENSIONS.get(suffix.lower()))][2]
