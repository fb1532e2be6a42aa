"""A folder relit by `relight IN OUT --ray` (Ray Data, a local Ray) against the local `relight IN OUT`, on this machine.

    python bench/dataset.py                              # 24 scenes of 256x256, half PNG, half JPEG
    python bench/dataset.py --count 48 --side 512 --cpus-per-actor 1

Writes --count images to a temporary folder, then relights it with each command in its own process,
as a user runs them, with the shipped weights on the CPU. The local command runs the model on all
cores, between reading and writing each batch; the Ray command starts a local Ray on all cores,
with one relighting actor of --cpus-per-actor CPUs (its torch threads) and the encoding and writing
in tasks on the CPUs left. Prints the CPU kind and a row per command: wall seconds of the whole
command (process start, Ray's start and the weight loading included), images/s over them, and for
Ray the images/s of its pipeline alone (from its summary). Last, how many outputs are byte-identical
and the largest difference between the two in decoded pixels: torch runs on all cores locally and on
--cpus-per-actor threads in the actor, and oneDNN's fp32 sums can differ in the last bit between
thread counts (a few pixels one level apart, which a JPEG's encoding can spread).
"""

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.precision import cpu_kind  # noqa: E402
from tests.images import encode, scene  # noqa: E402

SUMMARY = re.compile(r"([\d.]+) images/s over ([\d.]+) s")


def relight(*args: str) -> tuple[float, str]:
    """Runs the relight command; returns its wall seconds and its stderr."""
    env = {**os.environ, "RELIGHT_DEVICE": "cpu"}
    env.pop("RAY_ADDRESS", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "service.command", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"relight {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stderr


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())), dtype=np.int16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24, help="images in the folder")
    parser.add_argument("--side", type=int, default=256, help="their width and height in pixels")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    args = parser.parse_args()
    print(f"# {cpu_kind()}")
    print(f"# {args.count} images of {args.side}x{args.side} (half PNG, half JPEG q90), shipped weights, CPU")
    with tempfile.TemporaryDirectory() as folder:
        source, local, on_ray = Path(folder, "in"), Path(folder, "local"), Path(folder, "ray")
        source.mkdir()
        for index in range(args.count):
            image = scene(args.side, args.side, index)
            if index % 2:
                (source / f"{index:04d}.jpg").write_bytes(encode(image, "JPEG", quality=90))
            else:
                (source / f"{index:04d}.png").write_bytes(encode(image))
        local_s, _ = relight(str(source), str(local))
        ray_s, stderr = relight(str(source), str(on_ray), "--ray", "--cpus-per-actor", str(args.cpus_per_actor))
        summary = SUMMARY.search(stderr)
        names = sorted(path.name for path in local.iterdir())
        same = sum((local / name).read_bytes() == (on_ray / name).read_bytes() for name in names)
        largest = max(np.abs(pixels(local / name) - pixels(on_ray / name)).max() for name in names)
    print("| command | wall s | images/s (wall) | images/s (pipeline) |")
    print("| --- | --- | --- | --- |")
    print(f"| relight IN OUT | {local_s:.1f} | {args.count / local_s:.3f} | |")
    print(f"| relight IN OUT --ray (1 actor, {args.cpus_per_actor:g} CPU) | {ray_s:.1f} | {args.count / ray_s:.3f} | "
          f"{float(summary[1]):.3f} over {float(summary[2]):.1f} s |")  # fmt: skip
    print(f"# --ray / local, wall: {local_s / ray_s:.2f}x the images/s")
    print(f"# outputs byte-identical: {same} of {len(names)}; largest difference in decoded pixels: {largest}")


if __name__ == "__main__":
    main()
