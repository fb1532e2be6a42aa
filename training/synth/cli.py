"""Synthetic VIDIT track 1: random scenes rendered under a North/6500 K and an East/4500 K light.

    python -m training.synth --out data/synth2 --version 2 --train 300 --val 45 --size 512 --seed 0
    python -m training.synth --out data/synth --version 1 ...   # the first generator, byte for byte
    python -m training.synth --out data/synth3 --version 3 ...   # Mitsuba renders: training/synth/v3/

Each scene draws from its own random stream, derived from (seed, split, index), so the same
arguments give byte-identical files and validation scenes never repeat training ones.

Versions 1 and 2 (training/synth/raycast.py) ray cast each scene once and shade the same hits
under a distant sun from the North at 6500 K (input) and from the East at 4500 K (target), with
cast shadows, Lambertian and Blinn-Phong shading and an ambient term. Version 1: a textured
ground, boxes, spheres, cylinders and sometimes walls, the light at 35 degrees, a bright ambient
term. Version 2, closer to VIDIT's renders: the light low (18 degrees) so shadows are long, a
dark ambient term, buildings, walls, clutter and overhangs on pillars, natural textures.
Version 3 (training/synth/v3/, needs Mitsuba) path traces VIDIT-like scenes under VIDIT's own
light, a point light near the scene, with no ambient term.
"""

import argparse
from pathlib import Path

from training.synth.raycast import write_dataset

GENERATOR_VERSIONS = ("1", "2", "3")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        "python -m training.synth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=at_least(0), default=300)
    parser.add_argument("--val", type=at_least(0), default=45)
    parser.add_argument("--size", type=at_least(8), default=512, help="pixels, each side")
    parser.add_argument("--seed", type=at_least(0), default=0)
    parser.add_argument("--version", choices=GENERATOR_VERSIONS, default="2", help="3 needs Mitsuba (the train extra)")
    parser.add_argument("--supersample", type=at_least(1), default=2, help="v1, v2: rays per pixel side, averaged")
    parser.add_argument("--spp", type=at_least(1), default=32, help="v3: samples per pixel")
    parser.add_argument("--workers", type=at_least(1), default=None, help="v3: render processes (default: 1 per core)")
    parser.add_argument("--variant", default=None, help="v3: Mitsuba variant (default: the fastest that works here)")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder")
    try:
        if args.version == "3":
            # Imported here: v3's textures need the train extra (scipy, scikit-image), v1 and v2 do not.
            from training.synth.v3.write import write_dataset_v3

            seconds = write_dataset_v3(
                args.out, args.train, args.val, args.size, args.seed, args.spp, args.workers, args.variant
            )
        else:
            seconds = write_dataset(
                args.out, args.train, args.val, args.size, args.seed, args.supersample, args.version
            )
    except (ValueError, OSError) as error:  # another set in --out, a full disk, a read-only folder
        parser.exit(1, f"error: {error}\n")
    print(f"{args.out} holds {args.train} train + {args.val} validation pairs at {args.size}x{args.size} "
          f"(this run: {seconds:.1f} s)")  # fmt: skip


def at_least(low: int):
    """An argparse type: an int not below `low`, else argparse's own usage error."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return parse
