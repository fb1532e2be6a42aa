"""HEIC/HEIF, the iPhone camera's format, read (and written where libheif can) through pillow-heif.

Importing this module registers pillow-heif's opener with Pillow, so `Image.open` reads HEIF files
like any other format, the header first and the pixels on `load()`. libheif applies the file's own
rotation and mirroring (its irot/imir boxes) while decoding and pillow-heif sets the EXIF orientation
to 1, so the pixels arrive upright; the ICC profile, EXIF and XMP are in `image.info` as for a JPEG,
and 10-bit photos are reduced to 8 bits. Only the primary image is read: thumbnails, depth maps and
auxiliary images are skipped.

Writing HEIC needs an HEVC encoder in libheif: pillow-heif's wheels carry x265 (GPL-2.0-or-later);
a libheif built without it decodes only, and then pillow-heif registers no writer. `CAN_ENCODE`
says which; service.codecs.formats answers HEIC uploads as JPEG where it is False.
"""

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

FORMAT = "HEIF"  # Pillow's name of the format, for HEIC and every other HEIF flavour
CAN_ENCODE = FORMAT in Image.SAVE
# x265's fastest preset, at quality 75. Measured on 1024x1024 test pictures (2 busy cores, side by side): about a
# tenth of the time of the default preset ("slow"), at or below the error of a quality-90 JPEG (0.53 against 0.55
# levels on a smooth picture, 1.65 against 2.57 on a textured one), yet still 15-70x the JPEG's encoding time.
SAVE_OPTIONS = {"quality": 75, "enc_params": {"preset": "ultrafast"}}
