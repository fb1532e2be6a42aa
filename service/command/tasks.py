"""One file to relight: where its output goes, how the output is named, encoded and written, and the report
of the files that failed. The local and --server paths of `relight` use all of it; --ray its names, encoding and
failure reasons (its actors write to the cluster's store: ray_job.write_to_store)."""

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.files import image_suffixes, write_whole
from service.codecs.formats import SUFFIX_FORMATS, answer_suffix, same_format
from service.codecs.imaging import DecodedImage, ImageError, encode


@dataclass
class FileTask:
    """One file for `relight` to relight (not a Ray task): where it is, where its output goes, in what format."""

    source: Path
    target: Path  # for a folder: the same name, with the answer format's suffix where the format cannot be kept
    image_format: str | None = None  # None: the upload's own (service.codecs.formats.same_format)


def image_names(names: Iterable[str]) -> list[str]:
    """The file names a folder run relights, sorted: not hidden, and a suffix Pillow opens (read once a listing)."""
    suffixes = image_suffixes()
    return sorted(name for name in names if not name.startswith(".") and Path(name).suffix.lower() in suffixes)


def answer_name(name: str) -> str:
    """A file's name -> its output's: the same, or the answer format's suffix where its own format is not written."""
    path = Path(name)
    return path.stem + answer_suffix(path.suffix)


def folder_tasks(in_dir: Path, out_dir: Path) -> list[FileTask]:
    names = image_names(source.name for source in in_dir.iterdir() if source.is_file())
    return [FileTask(in_dir / name, out_dir / answer_name(name)) for name in names]


def file_task(source: Path, output: Path | None) -> FileTask:
    if output is None:
        output = source.with_name(f"{source.stem}-relit{answer_suffix(source.suffix)}")
    return FileTask(source, output, SUFFIX_FORMATS.get(output.suffix.lower()))


def write_output(task: FileTask, data: bytes) -> None:
    """Written beside and renamed into place: an interrupted run never leaves half a file to be skipped."""
    task.target.parent.mkdir(parents=True, exist_ok=True)
    write_whole(task.target, lambda partial: partial.write_bytes(data))


def encode_answer(decoded: DecodedImage, relit: np.ndarray, image_format: str | None) -> bytes:
    """Relit uint8 (H, W, 3) sRGB pixels of `decoded` encoded as `image_format`, else the input's own format
    (service.codecs.formats.same_format), with its alpha, colour space and metadata."""
    return encode(relit, decoded.alpha, image_format or same_format(decoded.source_format), decoded.metadata)


def failure_reason(error: Exception) -> str:
    """What the report of a file that failed says: an ImageError's detail, else the error's type and message."""
    return error.detail if isinstance(error, ImageError) else f"{type(error).__name__}: {error}"


class Failures:
    """The files that failed, by name, each reported on stderr above the progress bar as it fails."""

    def __init__(self, bar: tqdm):
        self.bar, self.names = bar, []

    def report(self, task: FileTask, reason: str) -> None:
        self.names.append(task.source.name)
        self.bar.write(f"relight: {task.source}: {reason}", file=sys.stderr)
