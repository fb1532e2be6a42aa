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
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--val", type=int, default=45)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", choices=GENERATOR_VERSIONS, default="2", help="3 needs Mitsuba (the train extra)")
    parser.add_argument("--supersample", type=int, default=2, help="v1, v2: rays per pixel side, averaged")
    parser.add_argument("--spp", type=int, default=32, help="v3: samples per pixel")
    parser.add_argument("--workers", type=int, default=None, help="v3: render processes (default: one per core)")
    parser.add_argument("--variant", default=None, help="v3: Mitsuba variant (default: the fastest that works here)")
    args = parser.parse_args(argv)
    if args.version == "3":
        # Imported here: v3's textures need the train extra (scipy, scikit-image), v1 and v2 do not.
        from training.synth.v3.write import write_dataset_v3

        seconds = write_dataset_v3(
            args.out, args.train, args.val, args.size, args.seed, args.spp, args.workers, args.variant
        )
    else:
        seconds = write_dataset(args.out, args.train, args.val, args.size, args.seed, args.supersample, args.version)
    print(f"wrote {args.train} train + {args.val} validation pairs at {args.size}x{args.size} in {seconds:.1f} s")
