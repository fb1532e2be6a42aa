"""Files on disk: written whole or not at all, for everything relight leaves there (weight files, training's
checkpoints and renders, the relight command's answers), and which names are images it reads."""

import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image


def image_suffixes() -> frozenset[str]:
    """Lower-case suffixes (".png", ".tif", ...) of every format Pillow opens, as registered when called: a plugin
    imported later (pillow-heif's ".heic") counts from then on. Both the relight command's folder runs and the
    training pairs use it, so that a picture saved as TIFF or BMP is read rather than silently left out."""
    return frozenset(suffix for suffix, name in Image.registered_extensions().items() if name in Image.OPEN)


def write_whole(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(partial) on a hidden name beside `path` (.NAME.partial, in the same folder so that the rename
    stays on one file system and is atomic, os.replace), then rename it to `path`: a killed run or a full disk
    never leaves half a file under the real name, where a resumed run would take it for done. The folder must
    exist. Raises what `write` raises (OSError for a full disk), after removing the partial file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
