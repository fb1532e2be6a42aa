"""Hostile and odd image files, built byte by byte or by the libraries themselves: EXIF with values that do not
fit their tags, Photoshop files, multi-image files, PNG text bombs, and the mutations the fuzz test applies."""

import io
import random
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms

from tests.images import chunk

MAKE, MODEL, ORIENTATION, USER_COMMENT, EXIF_VERSION = 0x010F, 0x0110, 0x0112, 0x9286, 0x9000
EXIF_IFD = 0x8769
ASCII, SHORT, LONG, FLOAT, UNDEFINED = 2, 3, 4, 11, 7


def save(pixels: np.ndarray | Image.Image, image_format: str, **options) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def raw_exif(entries: list[tuple[int, int, int, bytes]], sub_entries: list[tuple[int, int, int, bytes]] = ()) -> bytes:
    """b"Exif\\0\\0" + a little-endian TIFF structure with IFD0 `entries` and, if given, an Exif sub-IFD of
    `sub_entries`; each entry is (tag, TIFF type, count, value bytes) and is written as given, whatever type the
    tag should have."""
    head = b"II*\x00" + struct.pack("<I", 8)
    ifd0 = list(entries) + ([(EXIF_IFD, LONG, 1, b"")] if sub_entries else [])

    def directory(items, at: int) -> tuple[bytes, bytes, int]:
        body, extra = struct.pack("<H", len(items)), b""
        data_at = at + 2 + 12 * len(items) + 4
        for tag, kind, count, value in items:
            if len(value) <= 4:
                body += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
            else:
                body += struct.pack("<HHII", tag, kind, count, data_at + len(extra))
                extra += value + b"\0" * (len(value) % 2)
        return body + struct.pack("<I", 0), extra, data_at + len(extra)

    if not sub_entries:
        body, extra, _ = directory(ifd0, 8)
        return b"Exif\x00\x00" + head + body + extra
    # The sub-IFD goes after IFD0 and its data; its offset is IFD0's last entry's value.
    body, extra, end = directory(ifd0, 8)
    sub_body, sub_extra, _ = directory(list(sub_entries), end)
    pointer = body.index(struct.pack("<HHI", EXIF_IFD, LONG, 1)) + 8
    body = body[:pointer] + struct.pack("<I", end) + body[pointer + 4 :]
    return b"Exif\x00\x00" + head + body + extra + sub_body + sub_extra


def ascii_value(text: str) -> bytes:
    return text.encode() + b"\0"


def exif_to_break(orientation: int = 1) -> bytes:
    """Writable EXIF whose Make (IFD0) and ExifVersion (Exif sub-IFD) break_exif() turns into floats, beside
    a good Model, an orientation and a good UserComment. Files are saved with this and broken afterwards, since
    some writers (Pillow's AVIF) parse the EXIF they are given and could not write the broken one."""
    return raw_exif(
        [(MAKE, ASCII, 5, b"FLOA\0"), (MODEL, ASCII, 13, ascii_value("relight test")),
         (ORIENTATION, SHORT, 1, struct.pack("<H", orientation))],
        [(EXIF_VERSION, UNDEFINED, 4, b"0230"), (USER_COMMENT, UNDEFINED, 12, b"ASCII\0\0\0kept")],
    )  # fmt: skip


def break_exif(data: bytes) -> bytes:
    """`data` with the EXIF of exif_to_break() in it made unwritable: Make and ExifVersion hold a FLOAT where
    their ASCII or bytes belong, which Pillow reads (as 1.5 and 2.5) but cannot write back."""
    for tag, kind, count, value in ((MAKE, ASCII, 5, 1.5), (EXIF_VERSION, UNDEFINED, 4, 2.5)):
        entry = struct.pack("<HHI", tag, kind, count)
        at = data.index(entry)
        data = data[:at] + struct.pack("<HHIf", tag, FLOAT, 1, value) + data[at + 12 :]
    return data


def unwritable_exif(orientation: int = 1) -> bytes:
    return break_exif(exif_to_break(orientation))


def with_unwritable_exif(pixels: np.ndarray, image_format: str, orientation: int = 1, **options) -> bytes:
    """`pixels` saved as `image_format` with unwritable_exif(orientation): passed as it is to writers that copy
    EXIF bytes, broken after saving for those that parse them (Pillow's AVIF writer fails on it)."""
    try:
        return save(pixels, image_format, exif=unwritable_exif(orientation), **options)
    except Exception:  # the writer parsed the EXIF and could not write it back
        return break_exif(save(pixels, image_format, exif=exif_to_break(orientation), **options))


def big_exif(size: int = 70_000) -> bytes:
    """Valid EXIF larger than a JPEG segment holds: a UserComment of `size` bytes beside a Model tag."""
    comment = b"ASCII\0\0\0" + b"x" * size
    model = (MODEL, ASCII, 13, ascii_value("relight test"))
    return raw_exif([model], [(USER_COMMENT, UNDEFINED, len(comment), comment)])


def big_xmp(size: int = 70_000) -> bytes:
    padding = " " * size
    return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>'
            f"{padding}</x:xmpmeta>").encode()  # fmt: skip


def png_with_chunks(pixels: np.ndarray, chunks: list[bytes], after_pixels: list[bytes] = (), **options) -> bytes:
    """A PNG of `pixels` with `chunks` inserted after IHDR and `after_pixels` before IEND."""
    data = save(pixels, "PNG", **options)
    header_end = 8 + 25  # signature, IHDR
    end = data.rindex(b"IEND") - 4
    return data[:header_end] + b"".join(chunks) + data[header_end:end] + b"".join(after_pixels) + data[end:]


def ztxt(key: str, text_bytes: int) -> bytes:
    """A zTXt chunk whose text is `text_bytes` bytes once decompressed (a few hundred bytes compressed)."""
    return chunk(b"zTXt", key.encode("latin-1") + b"\0\0" + zlib.compress(b"a" * text_bytes, 9))


def text_bomb(pixels: np.ndarray, total: int, per_chunk: int = 1_000_000) -> bytes:
    """A small PNG whose zTXt chunks decompress to `total` bytes, in chunks of `per_chunk`."""
    count = max(1, total // per_chunk)
    return png_with_chunks(pixels, [ztxt(f"note {i}", per_chunk) for i in range(count)])


def profile(name: str) -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile(name)).tobytes()


def psd(planes: np.ndarray, mode: int = 3, layer: np.ndarray | None = None, icc: bytes | None = None) -> bytes:
    """A Photoshop file: 8-bit raw `planes` (H, W, C) as its composite, in Photoshop colour mode `mode` (1 grey,
    3 RGB, 4 CMYK, 9 Lab), with one RGB layer of `layer` (H, W, 3) if given and an ICC profile resource."""
    height, width, channels = planes.shape
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, channels, height, width, 8, mode)
    resources = b""
    if icc:
        resources = b"8BIM" + struct.pack(">H", 1039) + b"\0\0" + struct.pack(">I", len(icc)) + icc
        resources += b"\0" * (len(icc) % 2)
    layers = b""
    if layer is not None:
        name = b"\x05layer\0\0"  # Pascal string, padded to a multiple of 4
        extra = struct.pack(">II", 0, 0) + name
        record = struct.pack(">iiiiH", 0, 0, height, width, 3)
        record += b"".join(struct.pack(">hI", channel, 2 + height * width) for channel in range(3))
        record += b"8BIMnorm" + bytes([255, 0, 0, 0]) + struct.pack(">I", len(extra)) + extra
        data = b"".join(b"\0\0" + layer[..., channel].tobytes() for channel in range(3))
        info = struct.pack(">h", 1) + record + data
        info += b"\0" * (len(info) % 2)
        layers = struct.pack(">I", len(info)) + info + struct.pack(">I", 0)
    composite = b"\0\0" + b"".join(planes[..., channel].tobytes() for channel in range(channels))
    return (header + struct.pack(">I", 0) + struct.pack(">I", len(resources)) + resources
            + struct.pack(">I", len(layers)) + layers + composite)  # fmt: skip


# The fuzz test's mutations: each takes the file and a seeded random.Random and returns the mutated bytes.


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
    return bytes(mutated)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def overwrite_field(data: bytes, rng: random.Random) -> bytes:
    """A 2- or 4-byte field somewhere in the first 512 bytes (where the headers are) set to an extreme value."""
    width = rng.choice([2, 4])
    at = rng.randrange(max(1, min(len(data), 512) - width))
    value = rng.choice([0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)])
    value &= (1 << (8 * width)) - 1
    return data[:at] + value.to_bytes(width, rng.choice(["big", "little"])) + data[at + width :]


def lengths(data: bytes) -> list[tuple[int, int, str]]:
    """(offset, width, byte order) of the length fields of PNG chunks, ISO BMFF boxes (HEIF, AVIF), RIFF chunks
    (WebP) and JPEG segments, walked from the start of the file."""
    found = []
    if data.startswith(b"\x89PNG"):
        at = 8
        while at + 8 <= len(data):
            found.append((at, 4, "big"))
            at += 12 + int.from_bytes(data[at : at + 4], "big")
    elif data[4:8] == b"ftyp":
        stack = [(0, len(data))]
        while stack:
            at, end = stack.pop()
            while at + 8 <= end:
                size = int.from_bytes(data[at : at + 4], "big")
                found.append((at, 4, "big"))
                if data[at + 4 : at + 8] in (b"meta", b"iprp", b"ipco", b"iinf"):
                    stack.append((at + 12 if data[at + 4 : at + 8] in (b"meta", b"iinf") else at + 8, at + size))
                if size < 8:
                    break
                at += size
    elif data.startswith(b"RIFF"):
        found.append((4, 4, "little"))
        at = 12
        while at + 8 <= len(data):
            found.append((at + 4, 4, "little"))
            at += 8 + int.from_bytes(data[at + 4 : at + 8], "little") + 1 & ~1
    elif data.startswith(b"\xff\xd8"):
        at = 2
        while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] not in (0xDA, 0xD9):
            found.append((at + 2, 2, "big"))
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return found


def edit_length(data: bytes, rng: random.Random) -> bytes:
    """A chunk's, box's or segment's length made shorter, longer, zero or huge; a random field if none is found."""
    fields = lengths(data)
    if not fields:
        return overwrite_field(data, rng)
    at, width, order = rng.choice(fields)
    old = int.from_bytes(data[at : at + width], order)
    new = rng.choice([0, 1, old - 1, old + 1, old * 2, old // 2, (1 << (8 * width)) - 1, 1 << (8 * width - 1)])
    new &= (1 << (8 * width)) - 1
    return data[:at] + new.to_bytes(width, order) + data[at + width :]


def splice(data: bytes, rng: random.Random) -> bytes:
    """A run of bytes deleted, or repeated in place."""
    at = rng.randrange(len(data))
    run = data[at : at + rng.randint(1, 64)]
    return data[:at] + data[at + len(run) :] if rng.random() < 0.5 else data[:at] + run + data[at:]


MUTATIONS = [flip_bits, truncate, overwrite_field, edit_length, splice]
