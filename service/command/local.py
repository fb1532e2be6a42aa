"""`relight` on this machine: the service's engine and tiling (RELIGHT_* settings), images of one size batched."""

import itertools
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from model.tiling import Tiling, relight_tiled
from service.codecs.imaging import DecodedImage, ImageError, decode
from service.command.tasks import Failures, FileTask, encode_answer, failure_reason, write_output
from service.inference.engine import Engine
from service.settings import Settings

Key = TypeVar("Key")


class Relighter:
    """The service's engine and tiling (RELIGHT_* settings): decoded images in forward passes, relit pixels out.

    Raises model.weights.WeightsError for a weight file the service would refuse: unreadable, or one whose output
    on a known input is not finite or far outside its value range (Engine.check_outputs, as at the service's
    startup), so a file of NaNs writes no black images.
    """

    def __init__(self, settings: Settings):
        self.engine = Engine(settings)
        self.engine.check_outputs()
        self.tiling = Tiling(
            settings.tile_size, settings.tile_overlap, settings.max_batch_size, settings.max_batch_pixels
        )

    def batches(self, items: list[tuple[Key, DecodedImage]]) -> Iterator[list[tuple[Key, DecodedImage]]]:
        """The items in forward passes: one decoded shape each (EXIF orientation can turn an image), at most as
        many as the batch size and pixel budget allow; in their given order within a shape."""
        shape = lambda item: item[1].rgb.shape  # noqa: E731
        for (height, width, _), same in itertools.groupby(sorted(items, key=shape), key=shape):
            same = list(same)
            limit = self.tiling.batch_limit(height, width)
            for first in range(0, len(same), limit):
                yield same[first : first + limit]

    def relight(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 (H, W, 3) images of one shape -> relit, the same shape: one forward pass, or tiles for each
        image with a side above the tile size."""
        height, width = images[0].shape[:2]
        tiling = self.tiling
        if max(height, width) > tiling.tile:
            limit = tiling.batch_limit(min(height, tiling.tile), min(width, tiling.tile))
            return [relight_tiled(self.run, image, tiling.tile, tiling.overlap, limit) for image in images]
        return list(self.run(np.stack(images)))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.engine.run(batch).images


def relight_locally(tasks: list[FileTask], bar: tqdm, failures: Failures) -> None:
    settings = Settings()
    relighter = Relighter(settings)
    for group in same_size_groups(tasks, settings.max_pixels, relighter, failures, bar):
        outputs = relighter.relight([decoded.rgb for _, decoded in group])
        for (task, decoded), output in zip(group, outputs, strict=True):
            try:
                write_output(task, encode_answer(decoded, output, task.image_format))
            except ImageError as error:  # an answer format that cannot hold this size (service.codecs.limits)
                failures.report(task, failure_reason(error))
            bar.update()


def same_size_groups(
    tasks: list[FileTask], max_pixels: int, relighter: Relighter, failures: Failures, bar: tqdm
) -> Iterator[list[tuple[FileTask, DecodedImage]]]:
    """Decoded images in batches of one size, as many as a forward pass takes; unreadable files reported."""
    sizes = {}
    for task in tasks:
        try:
            with Image.open(task.source) as image:
                sizes[task.source] = image.size
        except (OSError, ValueError, SyntaxError) as error:
            failures.report(task, f"cannot be read as an image ({error})")
            bar.update()
    readable = sorted((t for t in tasks if t.source in sizes), key=lambda t: (sizes[t.source], t.source.name))
    for size, same in itertools.groupby(readable, key=lambda t: sizes[t.source]):
        limit = relighter.tiling.batch_limit(size[1], size[0])
        same = list(same)
        for first in range(0, len(same), limit):
            group = []
            for task in same[first : first + limit]:
                try:
                    group.append((task, decode(task.source.read_bytes(), max_pixels)))
                except (ImageError, OSError) as error:
                    failures.report(task, failure_reason(error))
                    bar.update()
            yield from relighter.batches(group)
