"""How much tiled inference differs from the whole-image pass, per tile size and overlap.

    python bench/tiling_quality.py                                 # 2048 and 4096, the grid below
    python bench/tiling_quality.py --sizes 2048 --tiles 1088 --overlaps 64 --seams docs/tile_seams.png

For each image size it relights one synthetic scene (generator v2, rendered at 1024x1024
and upscaled, so the content is a real relighting input) with the shipped weights in one
whole-image pass, then tiled for every tile size and overlap, and prints the PSNR of the
tiled output against the whole one, over the image and over the seam bands alone (the
pixels within `overlap` of a tile boundary, where a seam would show), the largest 8-bit
difference, and the compute the overlaps add. --seams writes a crop around a tile corner:
whole | tiled | 8x difference.
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.inference import relight  # noqa: E402
from model.precision import fast_autocast_dtype  # noqa: E402
from model.tiling import relight_tiled, tile_windows  # noqa: E402
from model.weights import SHIPPED_WEIGHTS, load_weights  # noqa: E402
from training.metrics import psnr  # noqa: E402
from training.synth.layout import scene_rng  # noqa: E402
from training.synth.raycast import LIGHTS, raycast_pair  # noqa: E402


def seam_mask(height: int, width: int, tile: int, overlap: int) -> np.ndarray:
    """Pixels within `overlap` of an edge of any window that is not an image edge."""
    mask = np.zeros((height, width), bool)
    for w in tile_windows(height, width, tile, overlap):
        for top in {w.top, w.top + w.height} - {0, height}:
            mask[max(0, top - overlap) : top + overlap, w.left : w.left + w.width] = True
        for left in {w.left, w.left + w.width} - {0, width}:
            mask[w.top : w.top + w.height, max(0, left - overlap) : left + overlap] = True
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    parser.add_argument("--sizes", default="2048,4096")
    parser.add_argument("--tiles", default="512,1024,1088")
    parser.add_argument("--overlaps", default="32,64,128")
    parser.add_argument("--max-batch", type=int, default=2, help="tiles per forward pass")
    parser.add_argument("--seams", type=Path, help="write a crop around a tile corner of the first size and tile")
    args = parser.parse_args()
    device = torch.device("cpu")
    model, metadata = load_weights(args.weights, device)
    autocast = fast_autocast_dtype(device)
    channels_last = autocast is not None
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def run(batch: np.ndarray) -> np.ndarray:
        return relight(model, torch.from_numpy(batch), metadata["value_range"], autocast, channels_last).numpy()

    source, _ = raycast_pair(scene_rng(0, "validation", 0), 1024, LIGHTS["2"], supersample=1, version="2")
    print(f"# {platform.machine()} CPU, torch {torch.__version__}, {autocast or torch.float32}, {args.weights.name}")
    columns = ["image", "tile", "overlap", "tiles", "extra compute", "PSNR vs whole", "PSNR on seams", "max diff",
               "s tiled", "s whole"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        pixels = np.array(Image.fromarray(source).resize((size, size), Image.Resampling.BICUBIC))
        start = time.perf_counter()
        whole = run(pixels[None])[0]
        whole_s = time.perf_counter() - start
        for tile in (int(t) for t in args.tiles.split(",")):
            for overlap in (int(o) for o in args.overlaps.split(",")):
                windows = tile_windows(size, size, tile, overlap)
                extra = sum(w.height * w.width for w in windows) / size**2 - 1
                start = time.perf_counter()
                tiled = relight_tiled(run, pixels, tile, overlap, args.max_batch)
                tiled_s = time.perf_counter() - start
                seams = torch.from_numpy(seam_mask(size, size, tile, overlap))
                tiled_t, whole_t = torch.from_numpy(tiled), torch.from_numpy(whole)
                whole_db, seams_db = psnr(tiled_t, whole_t), psnr(tiled_t[seams], whole_t[seams])
                diff = np.abs(tiled.astype(int) - whole.astype(int)).max()
                print(f"| {size} | {tile} | {overlap} | {len(windows)} | {extra:+.0%} | {whole_db:.1f} dB | "
                      f"{seams_db:.1f} dB | {diff} | {tiled_s:.1f} | {whole_s:.1f} |",
                      flush=True)  # fmt: skip
                if args.seams is not None:
                    corner = windows[1].left
                    box = (slice(corner - 128, corner + 128), slice(corner - 128, corner + 128))
                    amplified = np.clip(128 + 8 * (tiled[box].astype(int) - whole[box].astype(int)), 0, 255)
                    crop = np.concatenate([whole[box], tiled[box], amplified.astype(np.uint8)], axis=1)
                    Image.fromarray(crop).save(args.seams)
                    print(f"wrote {args.seams}: whole | tiled | 8x difference around ({corner}, {corner})")
                    args.seams = None


if __name__ == "__main__":
    main()
