"""What every generator shares: each scene's random stream, the pair's two lights, the files and meta.json.

A set is VIDIT's track-1 layout: OUT/SPLIT/input/ImageNNN.png lit from the North at 6500 K and
OUT/SPLIT/target/ImageNNN.png lit from the East at 4500 K, SPLIT train or validation, and
OUT/meta.json recording the generator and its arguments. Every scene draws from its own random
stream, derived from (seed, split, index), so the same arguments give byte-identical files
whatever the order of work, and validation scenes never repeat training ones.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.files import write_whole

GENERATOR = "relight training.synth"  # meta.json's "generator"
SPLITS = {"train": 0, "validation": 1}
SIDES = ("input", "target")


@dataclass(frozen=True)
class Light:
    """A light by the compass bearing it shines from and its colour temperature.

    Bearings are the camera's: 0 North (the far side of the scene), 90 East (its right).
    Generators v1/v2 read it as a distant sun's direction, v3 as a point light's place on a
    circle around the scene's centre point.
    """

    azimuth_deg: float
    kelvin: float


NORTH_6500 = Light(azimuth_deg=0.0, kelvin=6500.0)  # every input image
EAST_4500 = Light(azimuth_deg=90.0, kelvin=4500.0)  # every target image


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of scene `index` of `split` (a key of SPLITS; KeyError otherwise)."""
    return np.random.default_rng([seed, SPLITS[split], index])


def scene_number(split: str, index: int, train: int) -> int:
    """Scenes are numbered on from the train set, as in VIDIT (train Image000-299, validation Image300-...)."""
    return index if split == "train" else train + index


def pair_path(out: Path, split: str, side: str, number: int) -> Path:
    """Track-1 layout: OUT/SPLIT/input/ImageNNN.png (North, 6500 K) and OUT/SPLIT/target/ImageNNN.png."""
    return out / split / side / f"Image{number:03d}.png"


def make_layout(out: Path) -> None:
    for split in SPLITS:
        for side in SIDES:
            (out / split / side).mkdir(parents=True, exist_ok=True)


def save_png(pixels: np.ndarray, path: Path) -> None:
    """Write uint8 (H, W, 3) as a PNG, whole or not at all (write_whole)."""
    write_whole(path, lambda partial: Image.fromarray(pixels).save(partial, format="PNG"))


def save_pair(out: Path, split: str, number: int, source: np.ndarray, target: np.ndarray) -> None:
    """Write one pair, each file whole; a resumed run redoes the pair unless both are there (pair_done)."""
    save_png(target, pair_path(out, split, "target", number))
    save_png(source, pair_path(out, split, "input", number))


def set_meta(version: str, arguments: dict, **record) -> dict:
    """meta.json's contents: the generator, its version and arguments, then `record` (lights, renderer) in order."""
    return {"generator": GENERATOR, "generator_version": version, "arguments": arguments, **record}


def pair_done(out: Path, split: str, number: int) -> bool:
    """Whether both files of a pair are there: what a resumed run skips."""
    return all(pair_path(out, split, side, number).exists() for side in SIDES)


def write_meta(out: Path, meta: dict) -> None:
    """OUT/meta.json, whole or not at all (write_whole): a full disk never leaves one a rerun cannot read."""
    write_whole(out / "meta.json", lambda partial: partial.write_text(json.dumps(meta, indent=2) + "\n"))


def check_same_set(out: Path, meta: dict) -> None:
    """Raise ValueError when `out` already holds a set whose meta.json differs from `meta` (naming each key and
    argument that differs), or images without a meta.json (another program's, or an unknown generator's)."""
    meta_path = out / "meta.json"
    if not meta_path.exists():
        if any(out.glob("*/*/*.png")):
            raise ValueError(f"{out} holds images but no meta.json, so not a set of these arguments: use another --out")
        return
    try:
        before = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{meta_path} is not JSON: remove it if the images beside it are this set's") from None
    wanted = json.loads(json.dumps(meta))
    differ = [f"{key} differ" if isinstance(value, dict) else f"{key} {before.get(key)!r} (asked {value!r})"
              for key, value in wanted.items() if key != "arguments" and before.get(key) != value]  # fmt: skip
    arguments = before.get("arguments") or {}
    differ += [f"--{name} {arguments.get(name)!r} (asked {value!r})" for name, value in wanted["arguments"].items()
               if arguments.get(name) != value]  # fmt: skip
    if differ:
        raise ValueError(f"{out} holds a set made with other arguments or renderer: {'; '.join(differ)}. Use "
                         "another --out, or the same arguments to finish it")  # fmt: skip
