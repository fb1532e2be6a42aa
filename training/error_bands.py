"""Where a method's error lies: by how bright the target is, and across the frame from west to east.

PSNR says how far an answer is from the target, not where. The relit scenes' error concentrates: in regions the
East light reaches (bright in the target, often dark in the input) and towards the East side of the frame, where
that light stands. Each band pools every image's pixels and gives, on the BT.709 luma of output and target
(training.metrics.luma, 8-bit levels):

- the band's share of all pixels;
- the mean signed error, output minus target: negative where answers are too dark, positive where too bright;
- the RMSE, and the band's share of the whole squared error (what the band costs in PSNR).

Printed by `python -m training.evaluate --weights W --data DATA --bands`.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from training.metrics import BLACK_LUMA, luma

# Target luma bands, 8-bit levels: unlit (below BLACK_LUMA), near black, dark, the lit mid-tones, bright.
LUMA_BANDS = ((0.0, BLACK_LUMA), (BLACK_LUMA, 8.0), (8.0, 40.0), (40.0, 120.0), (120.0, 256.0))
COLUMN_BANDS = 8  # equal-width vertical strips, west (left) to east (right)


@dataclass
class BandError:
    """Pooled error sums of one band; `row()` turns them into the figures above."""

    name: str
    count: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, errors: torch.Tensor) -> None:
        self.count += errors.numel()
        self.total += errors.sum().item()
        self.squares += errors.square().sum().item()

    def row(self, all_pixels: int, all_squares: float) -> dict:
        """{"band", "pixel_share", "mean_error", "rmse", "squared_error_share"}; None for an empty band's error."""
        empty = self.count == 0
        return {
            "band": self.name,
            "pixel_share": self.count / all_pixels,
            "mean_error": None if empty else self.total / self.count,
            "rmse": None if empty else (self.squares / self.count) ** 0.5,
            "squared_error_share": self.squares / all_squares if all_squares else 0.0,
        }


def error_bands(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, list[dict]]:
    """(output, target) uint8 (H, W, 3) pairs -> {"luma": rows by the target's luma band, "columns": rows by
    column band, west to east}, each row as BandError.row. Images may differ in size (the column bands are
    fractions of each image's width). Raises ValueError for no pairs."""
    by_luma = [BandError(f"{low:g}-{high:g}") for low, high in LUMA_BANDS]
    by_column = [BandError(f"{band + 1} of {COLUMN_BANDS}") for band in range(COLUMN_BANDS)]
    for output, target in pairs:
        target_luma = luma(target)
        errors = luma(output) - target_luma
        for (low, high), band in zip(LUMA_BANDS, by_luma, strict=True):
            band.add(errors[(target_luma >= low) & (target_luma < high)])
        width = errors.shape[1]
        for index, band in enumerate(by_column):
            band.add(errors[:, index * width // COLUMN_BANDS : (index + 1) * width // COLUMN_BANDS])
    pixels, squares = sum(band.count for band in by_luma), sum(band.squares for band in by_luma)
    if pixels == 0:
        raise ValueError("no pixels to score")
    return {
        "luma": [band.row(pixels, squares) for band in by_luma],
        "columns": [band.row(pixels, squares) for band in by_column],
    }


def format_bands(bands: dict[str, list[dict]]) -> str:
    """The two tables of error_bands as text, one line per band."""

    def number(value: float | None, pattern: str) -> str:
        return "n/a" if value is None else format(value, pattern)

    lines = []
    for title, rows in (("target luma", bands["luma"]), ("columns, west to east", bands["columns"])):
        lines.append(f"{title:<22} {'pixels':>7} {'mean error':>11} {'RMSE':>6} {'of error':>9}")
        for row in rows:
            lines.append(
                f"{row['band']:<22} {row['pixel_share']:7.1%} {number(row['mean_error'], '+.1f'):>11} "
                f"{number(row['rmse'], '.1f'):>6} {row['squared_error_share']:9.1%}"
            )
    lines.append("errors in 8-bit levels of BT.709 luma, output minus target (negative: too dark)")
    return "\n".join(lines)
