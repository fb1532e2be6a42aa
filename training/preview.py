"""Picture grids for the docs: a few pairs of a split, optionally beside the baseline and a model.

    python -m training.preview data/synth docs/generators_v1_v2.png --beside data/synth2 --count 4
    python -m training.preview data/synth weights/validation_examples.png --weights weights/stacked_dmshn.safetensors

Each row is one scene: input | target (then another set's input | target with --beside),
or input | colour transfer | model | target.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from model.inference import relight
from model.precision import fast_autocast_dtype
from model.weights import load_weights
from training.baselines import ColourTransfer
from training.data import RelightPairs


def grid(rows: list[list[np.ndarray]], titles: list[str], tile: int) -> Image.Image:
    header = 18
    canvas = Image.new("RGB", (tile * len(titles), header + tile * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(titles):
        draw.text((column * tile + 4, 3), title, fill="black")
    for r, row in enumerate(rows):
        for c, pixels in enumerate(row):
            canvas.paste(Image.fromarray(pixels).resize((tile, tile), Image.Resampling.LANCZOS),
                         (c * tile, header + r * tile))  # fmt: skip
    return canvas


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="data root with train/ and validation/")
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", default=None, help="default: validation with --weights, else train")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--tile", type=int, default=192)
    parser.add_argument("--beside", type=Path, help="a second data root whose pairs go in columns beside the first's")
    args = parser.parse_args(argv)
    split = args.split or ("validation" if args.weights else "train")
    dataset = RelightPairs(args.data / split)
    indices = np.linspace(0, len(dataset) - 1, args.count).round().astype(int)
    if args.weights is None:
        rows = [[t.numpy() for t in dataset[i]] for i in indices]
        titles = ["input: North, 6500 K", "target: East, 4500 K"]
        if args.beside is not None:
            other = RelightPairs(args.beside / split)
            for row, i in zip(rows, np.linspace(0, len(other) - 1, args.count).round().astype(int), strict=True):
                row.extend(t.numpy() for t in other[i])
            titles = [f"{args.data.name}: {titles[0]}", "target", f"{args.beside.name}: {titles[0]}", "target"]
    else:
        model, metadata = load_weights(args.weights)
        colour = ColourTransfer.fit(RelightPairs(args.data / "train"))
        autocast = fast_autocast_dtype(torch.device("cpu"))
        rows = []
        for i in indices:
            source, target = dataset[i]
            ours = relight(model, source[None], metadata["value_range"], autocast, autocast is not None)[0]
            rows.append([source.numpy(), colour(source).numpy(), ours.numpy(), target.numpy()])
        titles = ["input", "colour transfer", metadata["architecture"], "target"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, titles, args.tile).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
