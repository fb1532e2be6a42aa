"""Describe a weight file: parameters, FLOPs at 1024x1024, value range and metadata.

python -m model.info [WEIGHTS]      (default: RELIGHT_WEIGHTS, as the service reads it, else the shipped weights)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "weights", nargs="?", type=Path, default=Path(os.environ.get("RELIGHT_WEIGHTS", SHIPPED_WEIGHTS))
    )
    args = parser.parse_args(argv)
    try:
        metadata = read_metadata(args.weights)
    except WeightsError as error:
        sys.exit(f"error: {error}")
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
    else:
        summary = json.dumps(metadata["training"], indent=2, sort_keys=True)
        print("training      " + summary.replace("\n", "\n" + " " * 14))


if __name__ == "__main__":
    main()
