"""Describe a weight file: parameters, FLOPs at 1024x1024, value range, and how it was trained.

python -m model.info [WEIGHTS]             (default: RELIGHT_WEIGHTS as the service reads it, else the shipped file)
python -m model.info [WEIGHTS] --training  the whole training record as JSON, the runs it started from included
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model.dmshn import ARCHITECTURES
from model.weights import SHIPPED_WEIGHTS, WeightsError, read_metadata


def count_flops(architecture: type[nn.Module], height: int = 1024, width: int = 1024) -> int:
    """Forward FLOPs (multiply and add counted apart) for one image; runs on the meta device, so costs nothing."""
    with torch.device("meta"):
        model = architecture()
        x = torch.empty(1, 3, height, width)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def training_lines(training: dict, architecture: str) -> list[str]:
    """The training record's headline, one "label  value" line each: steps and wall time, the command, the weights
    it started from, and each validation set's PSNR (dB) and SSIM for the network. Fields a record lacks (older
    files, other trainers) are left out; the whole record is `--training`'s."""
    lines = []
    if isinstance(training.get("steps"), int):
        hours = training.get("wall_time_s", 0) / 3600 if isinstance(training.get("wall_time_s"), int | float) else 0
        lines.append(f"last run      {training['steps']:,} steps" + (f" in {hours:.1f} h" if hours else ""))
    if "command" in training:
        lines.append(f"command       {training['command']}")
    start = training.get("warm_restart_from")
    if isinstance(start, dict) and "sha256" in start:
        lines.append(f"started from  sha256 {start['sha256'][:12]} (its own record: --training)")
    sets = training.get("validation_sets")
    for data, methods in sets.items() if isinstance(sets, dict) else ():
        scores = methods.get(architecture) if isinstance(methods, dict) else None
        if isinstance(scores, dict) and all(isinstance(scores.get(key), int | float) for key in ("psnr", "ssim")):
            lines.append(f"validation    {data}: {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
    return lines or [f"training      recorded: {', '.join(sorted(training))} (--training)"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "weights", nargs="?", type=Path, default=Path(os.environ.get("RELIGHT_WEIGHTS", SHIPPED_WEIGHTS))
    )
    parser.add_argument("--training", action="store_true", help="print the whole training record as JSON")
    args = parser.parse_args(argv)
    try:
        metadata = read_metadata(args.weights)
    except WeightsError as error:
        sys.exit(f"error: {error}")
    if args.training:
        print(json.dumps(metadata["training"], indent=2, sort_keys=True) if metadata["training"] else "(none recorded)")
        return
    architecture = ARCHITECTURES[metadata["architecture"]]
    parameters = sum(p.numel() for p in architecture().parameters())
    low, high = metadata["value_range"]
    print(f"file          {args.weights}")
    print(f"architecture  {metadata['architecture']}")
    print(f"parameters    {parameters:,}")
    print(f"FLOPs 1024^2  {count_flops(architecture) / 1e12:.3f} TFLOP")
    print(f"value range   [{low:g}, {high:g}]")
    print(f"format        {metadata['format']} v{metadata['format_version']}")
    if metadata["training"] is None:
        print("training      (none recorded)")
    elif not isinstance(metadata["training"], dict):
        print("training      " + json.dumps(metadata["training"]))
    else:
        print("\n".join(training_lines(metadata["training"], metadata["architecture"])))


if __name__ == "__main__":
    main()
