"""Evaluate a weight file and both baselines on a split at its full resolution.

    python -m training.evaluate --weights weights/stacked_dmshn.safetensors --data data/synth [--json]

PSNR and SSIM on the 8-bit outputs; LPIPS where its backbone weights are on disk; seconds
per image for the forward pass, synchronised on CUDA.
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
from training.lpips import LPIPSUnavailable, load_lpips
from training.metrics import psnr, ssim_uint8


def score(outputs: list[torch.Tensor], targets: list[torch.Tensor], seconds: float, lpips=None) -> dict:
    row = {
        "psnr": sum(psnr(o, t) for o, t in zip(outputs, targets, strict=True)) / len(outputs),
        "ssim": sum(ssim_uint8(o, t) for o, t in zip(outputs, targets, strict=True)) / len(outputs),
        "seconds_per_image": seconds / len(outputs),
    }
    row["lpips"] = (
        None if lpips is None else sum(lpips(o, t) for o, t in zip(outputs, targets, strict=True)) / len(outputs)
    )
    return row


def evaluate(method: Callable[[torch.Tensor], torch.Tensor], dataset: RelightPairs, indices=None, lpips=None) -> dict:
    """Score `method`, uint8 (H, W, 3) -> uint8 (H, W, 3), on the dataset; seconds count the method alone."""
    outputs, targets, seconds = [], [], 0.0
    for index in indices if indices is not None else range(len(dataset)):
        source, target = dataset[index]
        start = time.perf_counter()
        outputs.append(method(source))
        seconds += time.perf_counter() - start
        targets.append(target)
    return score(outputs, targets, seconds, lpips)


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
) -> dict[str, dict]:
    return {
        type(model).__name__: evaluate(
            network_method(model, value_range, autocast_dtype, channels_last), dataset, lpips=lpips
        ),
        "colour transfer": evaluate(colour_transfer, dataset, lpips=lpips),
        "identity": evaluate(identity, dataset, lpips=lpips),
    }


def format_table(rows: dict[str, dict], lpips_note: str | None) -> str:
    lines = [f"{'method':<18} {'PSNR':>7} {'SSIM':>7} {'LPIPS':>7} {'s/image':>8}"]
    for name, row in rows.items():
        lpips = "n/a" if row["lpips"] is None else f"{row['lpips']:.4f}"
        lines.append(f"{name:<18} {row['psnr']:7.2f} {row['ssim']:7.4f} {lpips:>7} {row['seconds_per_image']:8.3f}")
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
        model, dataset, metadata["value_range"], colour_transfer, autocast_dtype, autocast_dtype is not None, lpips
    )
    if args.json:
        print(json.dumps({"split": str(args.data / args.split), "rows": rows, "lpips_note": lpips_note}, indent=2))
    else:
        print(format_table(rows, lpips_note))


if __name__ == "__main__":
    main()
