"""Mending the EXIF inside a file that Pillow cannot open because of it.

Pillow's AVIF reader rewrites the EXIF while opening a file whose EXIF orientation differs from its irot/imir
boxes, and fails there on a tag whose value does not fit its type (service.codecs.metadata). Such a file is a
good picture: mend() removes those IFD entries from the file's bytes, in place (the entries after them move up;
the length of the file and every offset in it stay), so it opens, and the rest of its EXIF comes back.
"""

import struct

from PIL import ExifTags, Image

from service.codecs.metadata import exif_bytes, writable

TIFF_HEADERS = {b"II*\x00": "<", b"MM\x00*": ">"}
ENTRY = 12  # bytes of a TIFF IFD entry: tag, type, count, value or offset
# Bounds on the work for a hostile file full of TIFF headers: the candidates tried, and the bytes each is read from.
CANDIDATES = 8
WINDOW = 1 << 20


def mend(data: bytes) -> bytes | None:
    """`data` with the entries Pillow cannot write back removed from every EXIF block in it; None if there are
    none (nothing to mend)."""
    mended = bytearray(data)
    changed = False
    for header, order in TIFF_HEADERS.items():
        start, tried = data.find(header), 0
        while start != -1 and tried < CANDIDATES:
            changed |= mend_block(mended, start, order)
            start, tried = data.find(header, start + len(header)), tried + 1
    return bytes(mended) if changed else None


def mend_block(buffer: bytearray, start: int, order: str) -> bool:
    """Mend the TIFF structure (an EXIF block) at `start`; whether anything was removed."""
    exif = Image.Exif()
    try:
        exif.load(bytes(buffer[start : start + WINDOW]))
        directories = [(read_u32(buffer, start + 4, order), dict(exif), None)]
        for tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            if isinstance(exif.get(tag), int):
                directories.append((exif[tag], exif.get_ifd(tag), tag))
    except Exception:  # not an EXIF block after all (the bytes merely look like a TIFF header)
        return False
    if exif_bytes(exif) is not None:
        return False
    removed = False
    for offset, values, group in directories:
        removed |= remove_entries(buffer, start + offset, order, values, group)
    return removed


def remove_entries(buffer: bytearray, at: int, order: str, values: dict, group: int | None) -> bool:
    """Drop from the IFD at `at` the entries whose value (from `values`, Pillow's reading) Pillow cannot write."""
    try:
        (count,) = struct.unpack_from(order + "H", buffer, at)
    except struct.error:
        return False
    if at < 0 or at + 6 + count * ENTRY > len(buffer):
        return False
    entries = [bytes(buffer[at + 2 + i * ENTRY : at + 2 + (i + 1) * ENTRY]) for i in range(count)]
    next_ifd = bytes(buffer[at + 2 + count * ENTRY : at + 6 + count * ENTRY])
    kept = [entry for entry in entries if writable_entry(entry, order, values, group)]
    if len(kept) == count:
        return False
    block = struct.pack(order + "H", len(kept)) + b"".join(kept) + next_ifd
    buffer[at : at + 6 + count * ENTRY] = block.ljust(6 + count * ENTRY, b"\0")
    return True


def writable_entry(entry: bytes, order: str, values: dict, group: int | None) -> bool:
    (tag,) = struct.unpack_from(order + "H", entry)
    return tag not in values or writable(tag, values[tag], group)


def read_u32(buffer: bytearray, at: int, order: str) -> int:
    return struct.unpack_from(order + "I", buffer, at)[0]
