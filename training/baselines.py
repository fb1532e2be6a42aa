"""The floors every trained model must beat: the identity, and a global colour transfer.

The colour transfer is the best 3x3 colour matrix plus bias (least squares on the train
split's pixels, in [0, 1] sRGB): all that relighting is if one ignores shadows and shading.
Without the bias (offset=False) the fit keeps black at black, as light does where none falls.
"""

import numpy as np
import torch
from torch.utils.data import Dataset


def identity(pixels: torch.Tensor) -> torch.Tensor:
    return pixels


class ColourTransfer:
    """The global colour transfer y = x @ M + b, one mapping for every pixel: x and y are RGB row vectors on
    [0, 1] (uint8 / 255), `matrix` M float64 (3, 3) with M[i, j] the weight of input channel i in output j,
    `bias` b float64 (3,). Called on uint8 (..., 3) CPU tensors, it rounds and clips back to uint8. fit()
    finds M and b by least squares; training.identity_init.colour_init_ starts a network as this mapping."""

    def __init__(self, matrix: np.ndarray, bias: np.ndarray):
        self.matrix, self.bias = matrix, bias

    @classmethod
    def fit(
        cls, dataset: Dataset, pixels_per_image: int = 20_000, seed: int = 0, offset: bool = True
    ) -> "ColourTransfer":
        """Least squares y = x M + b over `pixels_per_image` random pixels of each pair, x and y in [0, 1];
        offset=False fits y = x M (b = 0). M is float64 (3, 3), b float64 (3,).

        `dataset` yields (source, target) uint8 (H, W, 3) tensors, as training.data.RelightPairs does (its
        random crops when it crops); `seed` seeds the choice of pixels. Raises ValueError for an empty
        dataset.
        """
        rng = np.random.default_rng(seed)
        sources, targets = [], []
        for index in range(len(dataset)):
            source, target = (t.reshape(-1, 3).numpy() for t in dataset[index])
            chosen = rng.choice(len(source), size=min(pixels_per_image, len(source)), replace=False)
            sources.append(source[chosen])
            targets.append(target[chosen])
        x = np.concatenate(sources).astype(np.float64) / 255.0
        y = np.concatenate(targets).astype(np.float64) / 255.0
        design = np.concatenate([x, np.ones((len(x), 1))], axis=1) if offset else x
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        return cls(solution[:3], solution[3] if offset else np.zeros(3))

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3) -> uint8 (..., 3)."""
        x = pixels.numpy().astype(np.float64) / 255.0
        y = x @ self.matrix + self.bias
        return torch.from_numpy(np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8))
