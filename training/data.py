"""Relighting pairs from disk: VIDIT track-1 layout, full-VIDIT naming, or our synthetic sets.

Track-1 layout:   ROOT/SPLIT/input/ImageNNN.png  ->  ROOT/SPLIT/target/ImageNNN.png
Full VIDIT names: DIR/Image014_6500_N.png        ->  DIR/Image014_4500_E.png
                  DIR/Image014_6500_N.png, DIR/Image014_4500_W.png, both flipped left-right:
                  one more North -> East pair (a mirror swaps East and West, not North).

Items are uint8 (H, W, 3) tensors: conversion to the network's value range happens in
model.pixels, once.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from model.files import image_suffixes

VIDIT_NAME = re.compile(r"^(?P<scene>Image\d+)_(?P<kelvin>\d+)_(?P<direction>[NESW]{1,2})$")


class DataError(ValueError):
    """A data set that cannot be used: names the file or folder and what is wrong."""


@dataclass(frozen=True)
class Pair:
    input: Path
    target: Path
    flip: bool = False  # mirror both images left-right (the West-target pairs)


def split_images(folder: str | Path) -> list[Path]:
    """The images of a split folder, sorted: those in input/ (track-1 layout), else those in the folder itself
    (full-VIDIT names); [] where the folder is missing or holds none, as a train-only set's validation split
    (`training.synth --val 0`) does."""
    folder = Path(folder)
    images = folder / "input" if (folder / "input").is_dir() else folder
    if not images.is_dir():
        return []
    suffixes = image_suffixes()
    return sorted(path for path in images.iterdir() if path.suffix.lower() in suffixes)


def discover_pairs(folder: Path) -> list[Pair]:
    """Pairs in a track-1 split folder (input/, target/) or a folder of full-VIDIT names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    if (folder / "input").is_dir():
        pairs = []
        for path in split_images(folder):
            target = folder / "target" / path.name
            if not target.is_file():
                raise DataError(f"{path}: no target image {target}")
            pairs.append(Pair(path, target))
    else:
        by_name = {p.stem: p for p in split_images(folder)}
        pairs = []
        for stem, path in sorted(by_name.items()):
            match = VIDIT_NAME.match(stem)
            if not match or (match["kelvin"], match["direction"]) != ("6500", "N"):
                continue
            east, west = by_name.get(f"{match['scene']}_4500_E"), by_name.get(f"{match['scene']}_4500_W")
            if east is None:
                raise DataError(f"{path}: no target image {folder / (match['scene'] + '_4500_E.png')}")
            pairs.append(Pair(path, east))
            if west is not None:
                pairs.append(Pair(path, west, flip=True))
    if not pairs:
        raise DataError(f"{folder}: no image pairs (expected input/ and target/, or Image000_6500_N.png names)")
    return pairs


def read_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3): alpha is dropped, as VIDIT's RGBA files carry alpha 255."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable image ({error})") from None


def image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable image ({error})") from None


class RelightPairs(Dataset):
    """(input, target) uint8 (H, W, 3) tensors, optionally resized, then randomly cropped.

    Crops are drawn from a stream seeded by (seed, epoch, index): call set_epoch at the
    start of each epoch, and the same epoch gives the same crops in any process. A list of
    folders reads their pairs one after another (e.g. the train splits of two generators).
    """

    def __init__(
        self, folder: str | Path | list[Path], resize: int | None = None, crop: int | None = None, seed: int = 0
    ):
        folders = folder if isinstance(folder, list) else [Path(folder)]
        self.pairs = [pair for one in folders for pair in discover_pairs(Path(one))]
        self.resize, self.crop, self.seed, self.epoch = resize, crop, seed, 0
        sides = {}  # each input's shorter side, in pixels: read once, for the crop check below
        for pair in self.pairs:
            size, target_size = image_size(pair.input), image_size(pair.target)
            if size != target_size:
                raise DataError(f"{pair.target}: size {target_size} differs from {pair.input} {size}")
            sides[pair.input] = min(size)
        if crop is not None and resize is not None and crop > resize:
            raise DataError(f"crop {crop} is larger than the images resized to {resize}x{resize}")
        if crop is not None and resize is None:
            smallest = min(sides, key=sides.__getitem__)
            if crop > sides[smallest]:
                raise DataError(f"{smallest}: crop {crop} is larger than the image's side ({sides[smallest]} pixels)")
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole pair, resized and flipped as configured; decoded once and kept."""
        if index not in self._cache:
            pair = self.pairs[index]
            images = []
            for path in (pair.input, pair.target):
                pixels = read_rgb(path)
                if self.resize is not None:
                    resized = Image.fromarray(pixels).resize((self.resize, self.resize), Image.Resampling.BICUBIC)
                    pixels = np.asarray(resized)
                if pair.flip:
                    pixels = pixels[:, ::-1]
                images.append(torch.from_numpy(np.array(pixels)))
            self._cache[index] = (images[0], images[1])
        return self._cache[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        source, target = self.load(index)
        if self.crop is None:
            return source, target
        rng = np.random.default_rng([self.seed, self.epoch, index])
        top = int(rng.integers(0, source.shape[0] - self.crop + 1))
        left = int(rng.integers(0, source.shape[1] - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        return source[window], target[window]
