"""Evaluate a weight file and both baselines on a split at its full resolution.

    python -m training.evaluate --weights weights/stacked_dmshn.safetensors --data data/synth [--json] [--bands]

Per method, on the 8-bit outputs:
- PSNR and SSIM against the target; LPIPS where its backbone weights are on disk;
- sPSNR and sSSIM: the same after each output channel is fitted to the target's by least squares
  (gain and offset, training.metrics.gain_offset_fit), so white balance and exposure do not count,
  only where light and shadow fall;
- black: the mean output level (0..255) over the pixels where the input's luma is below 4/255, pooled
  over the split (the identity keeps them below 4; n/a where no input pixel is that dark);
- unlit: the mean output level where both the input's and the target's luma are below 4/255 (light reaches
  them in neither lighting), pooled; the target's own level there is printed below the table;
- frame: the mean output level for a flat black 256x256 frame (what the method adds to black);
- seconds per image for the forward pass, synchronised on CUDA.
--bands also prints where the network's error lies, by the target's brightness and from west to east
(training.error_bands).
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from model.inference import relight
from model.pixels import ValueRange
from model.precision import fast_autocast_dtype
from model.weights import WeightsError, load_weights
from training.baselines import ColourTransfer, identity
from training.data import DataError, RelightPairs
from training.error_bands import error_bands, format_bands
from training.lpips import LPIPSUnavailable, load_lpips
from training.metrics import (
    black_level_sum,
    blacks_kept,
    psnr,
    ssim_uint8,
    structural_scores,
    unlit_level_sum,
)

BLACK_FRAME_SIZE = 256  # a multiple of 16: the network sees it unpadded


def score(
    sources: list[torch.Tensor],
    outputs: list[torch.Tensor],
    targets: list[torch.Tensor],
    seconds: float,
    lpips=None,
) -> dict:
    """Mean scores over uint8 (H, W, 3) images; "blacks_kept" and "unlit" pool every image's black pixels
    (None if none)."""
    pairs = list(zip(outputs, targets, strict=True))
    structural = [structural_scores(o, t) for o, t in pairs]
    blacks = [black_level_sum(o, s) for o, s in zip(outputs, sources, strict=True)]
    black_total, black_count = sum(total for total, _ in blacks), sum(count for _, count in blacks)
    unlit = [unlit_level_sum(o, s, t) for o, s, t in zip(outputs, sources, targets, strict=True)]
    unlit_total, unlit_count = sum(total for total, _ in unlit), sum(count for _, count in unlit)
    return {
        "psnr": sum(psnr(o, t) for o, t in pairs) / len(pairs),
        "ssim": sum(ssim_uint8(o, t) for o, t in pairs) / len(pairs),
        "structural_psnr": sum(p for p, _ in structural) / len(pairs),
        "structural_ssim": sum(s for _, s in structural) / len(pairs),
        "blacks_kept": black_total / (3 * black_count) if black_count else None,
        "unlit": unlit_total / (3 * unlit_count) if unlit_count else None,
        "seconds_per_image": seconds / len(pairs),
        "lpips": None if lpips is None else sum(lpips(o, t) for o, t in pairs) / len(pairs),
    }


def evaluate(
    method: Callable[[torch.Tensor], torch.Tensor], dataset: RelightPairs, indices=None, lpips=None, bands=False
) -> dict:
    """Score `method`, uint8 (H, W, 3) -> uint8 (H, W, 3), on the dataset; seconds count the method alone.
    With `bands`, also "bands": where the error lies (training.error_bands), from the same outputs."""
    sources, outputs, targets, seconds = [], [], [], 0.0
    for index in indices if indices is not None else range(len(dataset)):
        source, target = dataset[index]
        start = time.perf_counter()
        outputs.append(method(source))
        seconds += time.perf_counter() - start
        sources.append(source)
        targets.append(target)
    scores = score(sources, outputs, targets, seconds, lpips)
    return scores | {"bands": error_bands(zip(outputs, targets, strict=True))} if bands else scores


def black_frame_levels(method: Callable[[torch.Tensor], torch.Tensor], size: int = BLACK_FRAME_SIZE) -> dict:
    """What `method` makes of darkness, in 8-bit units (0..255, channels averaged): "flat", the mean output
    level for an all-black size x size frame; "beside_patch", the mean level of the black part of that frame
    with one lit square (level 180, a quarter of the side) in its centre."""
    black = torch.zeros(size, size, 3, dtype=torch.uint8)
    lit = black.clone()
    lit[3 * size // 8 : 5 * size // 8, 3 * size // 8 : 5 * size // 8] = 180
    return {"flat": method(black).double().mean().item(), "beside_patch": blacks_kept(method(lit), lit)}


def dark_pixels(dataset: RelightPairs, indices=None) -> dict:
    """The split's black input pixels (`training.metrics.black_mask`): their share of all pixels, and the
    target's mean level there in 8-bit units (None where there are none): what "blacks_kept" should be; the same
    for the pixels black in both input and target ("unlit_fraction", "unlit_target_level"): what "unlit" should be."""
    total, count, unlit_total, unlit_count, pixels = 0.0, 0, 0.0, 0, 0
    for index in indices if indices is not None else range(len(dataset)):
        source, target = dataset[index]
        level_sum, black = black_level_sum(target, source)
        unlit_sum, unlit = unlit_level_sum(target, source, target)
        total, count, pixels = total + level_sum, count + black, pixels + source.shape[0] * source.shape[1]
        unlit_total, unlit_count = unlit_total + unlit_sum, unlit_count + unlit
    return {
        "fraction": count / pixels,
        "target_level": total / (3 * count) if count else None,
        "unlit_fraction": unlit_count / pixels,
        "unlit_target_level": unlit_total / (3 * unlit_count) if unlit_count else None,
    }


def network_method(
    model: nn.Module,
    value_range: ValueRange,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network as a method; relight() returns on the CPU, which waits for the device before the clock stops."""

    def method(source: torch.Tensor) -> torch.Tensor:
        return relight(model, source[None], value_range, autocast_dtype, channels_last)[0]

    return method


def evaluation_table(
    model: nn.Module,
    dataset: RelightPairs,
    value_range: ValueRange,
    colour_transfer: ColourTransfer,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    lpips=None,
    bands: bool = False,
) -> dict[str, dict]:
    """One row per method (the network, then both baselines): `evaluate`'s scores (with `bands`, where the error
    lies) and "black_frame"."""
    methods = {
        type(model).__name__: network_method(model, value_range, autocast_dtype, channels_last),
        "colour transfer": colour_transfer,
        "identity": identity,
    }
    return {
        name: evaluate(method, dataset, lpips=lpips, bands=bands) | {"black_frame": black_frame_levels(method)}
        for name, method in methods.items()
    }


def optional(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(rows: dict[str, dict], lpips_note: str | None, dark: dict | None = None) -> str:
    lines = [
        f"{'method':<18} {'PSNR':>7} {'SSIM':>7} {'LPIPS':>7} {'sPSNR':>7} {'sSSIM':>7} {'black':>6} {'unlit':>6} "
        f"{'frame':>6} {'s/image':>8}"
    ]
    for name, row in rows.items():
        frame = row.get("black_frame", {}).get("flat")
        lines.append(
            f"{name:<18} {row['psnr']:7.2f} {row['ssim']:7.4f} {optional(row['lpips'], 4):>7} "
            f"{row['structural_psnr']:7.2f} {row['structural_ssim']:7.4f} {optional(row['blacks_kept'], 1):>6} "
            f"{optional(row.get('unlit'), 1):>6} {optional(frame, 1):>6} {row['seconds_per_image']:8.3f}"
        )
    lines.append("sPSNR, sSSIM: after a per-channel gain/offset fit to the target; black: mean output level (0-255)")
    if dark is None:
        where = ""
    elif dark["target_level"] is None:
        where = " (no such pixel here)"
    else:
        where = f" ({dark['fraction']:.1%} of pixels, the target's level there {dark['target_level']:.1f})"
    lines.append(f"  where the input's luma < 4{where};")
    if dark is not None and dark.get("unlit_target_level") is not None:
        unlit = f" ({dark['unlit_fraction']:.1%} of pixels, the target's level there {dark['unlit_target_level']:.1f})"
    else:
        unlit = ""
    lines.append(f"  unlit: where input and target are both below 4{unlit}; frame: level for a flat black frame")
    if lpips_note:
        lines.append(f"LPIPS n/a: {lpips_note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument(
        "--data", type=Path, required=True, help="root with train/ (for the colour baseline) and SPLIT/"
    )
    parser.add_argument("--split", default="validation")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["auto", "fp32"], default="auto")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument(
        "--bands", action="store_true", help="also where the network's error lies (training.error_bands)"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    try:
        model, metadata = load_weights(args.weights, device)
        dataset = RelightPairs(args.data / args.split)
        colour_transfer = ColourTransfer.fit(RelightPairs(args.data / "train"))
    except (WeightsError, DataError) as error:
        sys.exit(f"error: {error}")
    try:
        lpips, lpips_note = load_lpips(device), None
    except LPIPSUnavailable as why:
        lpips, lpips_note = None, str(why)
    autocast_dtype = fast_autocast_dtype(device) if args.precision == "auto" else None
    rows = evaluation_table(
        model, dataset, metadata["value_range"], colour_transfer, autocast_dtype, autocast_dtype is not None, lpips,
        args.bands,
    )  # fmt: skip
    dark = dark_pixels(dataset)
    if args.json:
        report = {"split": str(args.data / args.split), "rows": rows, "dark_pixels": dark, "lpips_note": lpips_note}
        print(json.dumps(report, indent=2))
    else:
        print(format_table(rows, lpips_note, dark))
        if args.bands:
            print(f"\nwhere the network's error lies:\n{format_bands(rows[type(model).__name__]['bands'])}")


if __name__ == "__main__":
    main()
