"""Tiled inference for images larger than a tile: overlapping windows blended without seams.

Memory then grows with the tile batch, not with the image. Each window is a fixed-size
crop; windows overlap by at least `overlap` pixels and their outputs are mixed with linear
ramps across every overlap, normalised so that the weights at each pixel sum to one. An
image no larger than the tile is one window: exactly the whole-image pass.

What tiling changes: the network's coarse pyramid levels see a tile, not the whole image,
so light that depends on far-away context can differ between tiles (a shadow cast from
outside a tile comes out fainter); the ramps hide the boundaries (bench/tiling_quality.py
measures how much it differs).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from model.shapes import SIZE_MULTIPLE


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window starts along one axis: as few windows as keep `overlap`, spread evenly, the last one at the end.

    Starts fall on multiples of the network's size multiple, so each tile's pyramid samples the same
    grid as the whole image's: off that grid, tiled outputs differ several times more (bench/RESULTS.md).
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap - SIZE_MULTIPLE) / (tile - overlap - SIZE_MULTIPLE))
    step = (length - tile) / (count - 1)
    starts = [round(i * step / SIZE_MULTIPLE) * SIZE_MULTIPLE for i in range(count - 1)]
    return [*starts, length - tile]


def axis_weights(length: int, starts: list[int], size: int, overlap: int) -> list[np.ndarray]:
    """Per-window weights along one axis: ramps over the overlaps, normalised to sum to one at every pixel."""
    ramps = []
    for i in range(len(starts)):
        position = np.arange(size, dtype=np.float32) + 0.5
        ramp = np.ones(size, np.float32)
        if i > 0:
            ramp = np.minimum(ramp, position / overlap)
        if i < len(starts) - 1:
            ramp = np.minimum(ramp, (size - position) / overlap)
        ramps.append(ramp)
    total = np.zeros(length, np.float32)
    for start, ramp in zip(starts, ramps, strict=True):
        total[start : start + size] += ramp
    return [ramp / total[start : start + size] for start, ramp in zip(starts, ramps, strict=True)]


@dataclass(frozen=True)
class Window:
    """A rectangle of an image, in pixels: rows top..top+height, columns left..left+width."""

    top: int
    left: int
    height: int
    width: int


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """The windows an image of height x width is cut into (one window when it fits in a tile)."""
    if not 0 < overlap <= tile // 2:
        raise ValueError(f"overlap must be in 1..tile/2, got {overlap} for tile {tile}")
    tile_h, tile_w = min(tile, height), min(tile, width)
    rows, columns = axis_starts(height, tile_h, overlap), axis_starts(width, tile_w, overlap)
    return [Window(top, left, tile_h, tile_w) for top in rows for left in columns]


@dataclass(frozen=True)
class Tiling:
    """How images are cut and batched: `tile` and `overlap` in pixels (tile_windows), and a forward pass's
    limits, `max_batch_size` images or tiles and `max_batch_pixels` pixels (RELIGHT_* settings of those names)."""

    tile: int
    overlap: int
    max_batch_size: int
    max_batch_pixels: int

    def windows(self, height: int, width: int) -> list[Window]:
        return tile_windows(height, width, self.tile, self.overlap)

    def batch_limit(self, height: int, width: int) -> int:
        """Images or tiles of height x width per forward pass: the count limit or the pixel budget, whichever binds."""
        return max(1, min(self.max_batch_size, self.max_batch_pixels // (height * width)))


@dataclass
class TiledImage:
    """One image cut into windows; tile outputs are added in as they come, in any order."""

    pixels: np.ndarray  # uint8 (H, W, 3)
    tile: int
    overlap: int
    windows: list[Window] = field(init=False)
    _row_weights: dict[int, np.ndarray] = field(init=False)
    _column_weights: dict[int, np.ndarray] = field(init=False)
    _sum: np.ndarray | None = field(init=False, default=None)
    _whole: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self):
        height, width = self.pixels.shape[:2]
        self.windows = tile_windows(height, width, self.tile, self.overlap)
        tile_h, tile_w = self.tile_shape
        rows, columns = sorted({w.top for w in self.windows}), sorted({w.left for w in self.windows})
        self._row_weights = dict(zip(rows, axis_weights(height, rows, tile_h, self.overlap), strict=True))
        self._column_weights = dict(zip(columns, axis_weights(width, columns, tile_w, self.overlap), strict=True))

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.windows[0].height, self.windows[0].width

    def crop(self, window: Window) -> np.ndarray:
        return self.pixels[window.top : window.top + window.height, window.left : window.left + window.width]

    def add(self, window: Window, output: np.ndarray) -> None:
        """Blend one window's output, uint8 (window.height, window.width, 3), into the result.

        With one window the output is kept as it is, by reference and unchecked, and becomes result(). With
        several it is weighted (the ramps) into a float32 (H, W, 3) sum; `window` must be one of `windows`
        (another raises KeyError or ValueError), and adding a window twice counts it twice.
        """
        if len(self.windows) == 1:
            self._whole = output
            return
        if self._sum is None:
            self._sum = np.zeros(self.pixels.shape, np.float32)
        weight = self._row_weights[window.top][:, None, None] * self._column_weights[window.left][None, :, None]
        region = self._sum[window.top : window.top + window.height, window.left : window.left + window.width]
        region += output * weight

    def result(self) -> np.ndarray:
        """The relit image, uint8 (H, W, 3) at the input's size: the blended windows, rounded and clipped to 0..255
        (with one window, add()'s output itself, not a copy).

        Meant for after every window has been added; nothing checks that. Before any add() it raises TypeError;
        with only some windows added it returns the partial sum: black where no window has landed yet, and
        darker than it should be where only some of the windows covering a pixel have.
        """
        if self._whole is not None:
            return self._whole
        return np.clip(np.rint(self._sum), 0, 255).astype(np.uint8)


def relight_tiled(
    run: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray, tile: int, overlap: int, max_batch: int
) -> np.ndarray:
    """Relight one uint8 (H, W, 3) image through `run` (uint8 batch -> uint8 batch), `max_batch` tiles at a time."""
    image = TiledImage(pixels, tile, overlap)
    for first in range(0, len(image.windows), max_batch):
        windows = image.windows[first : first + max_batch]
        outputs = run(np.stack([image.crop(window) for window in windows]))
        for window, output in zip(windows, outputs, strict=True):
            image.add(window, output)
    return image.result()
