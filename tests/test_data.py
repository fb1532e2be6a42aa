import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from training.baselines import ColourTransfer, identity
from training.data import DataError, RelightPairs, discover_pairs
from training.synth.layout import scene_rng
from training.synth.raycast import LIGHTS, LightSetup, planckian_rgb, raycast_pair, write_dataset


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, train=3, val=2, size=48, seed=7)
    return root


def test_generator_is_deterministic(tiny_set, tmp_path):
    write_dataset(tmp_path, train=3, val=2, size=48, seed=7)
    files = sorted(p.relative_to(tiny_set) for p in tiny_set.rglob("*") if p.is_file())
    assert len(files) == 2 * 5 + 1
    for name in files:
        assert (tiny_set / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_a_killed_run_resumes_where_it_stopped_and_refuses_other_arguments(tiny_set, tmp_path):
    copy = tmp_path / "set"
    shutil.copytree(tiny_set, copy)
    marker = np.full((48, 48, 3), 7, np.uint8)
    Image.fromarray(marker).save(copy / "train" / "input" / "Image000.png")
    for side in ("input", "target"):
        (copy / "validation" / side / "Image004.png").unlink()
    (copy / "train" / "input" / "Image002.png").unlink()  # killed between a pair's target and its input
    (copy / "train" / "target" / "Image001.png").unlink()  # a target lost afterwards
    write_dataset(copy, train=3, val=2, size=48, seed=7)
    assert np.array_equal(np.asarray(Image.open(copy / "train" / "input" / "Image000.png")), marker)
    again = ("validation/input/Image004.png", "validation/target/Image004.png", "train/input/Image002.png",
             "train/target/Image001.png")  # fmt: skip
    for name in again:
        assert (copy / name).read_bytes() == (tiny_set / name).read_bytes(), name
    with pytest.raises(ValueError, match=r"--seed 7 \(asked 8\)"):
        write_dataset(copy, train=3, val=2, size=48, seed=8)
    with pytest.raises(ValueError, match=r"generator_version '1' \(asked '2'\)"):
        write_dataset(copy, train=3, val=2, size=48, seed=7, version="2")
    (copy / "meta.json").unlink()  # images without meta.json: another program's, or a run of unknown arguments
    with pytest.raises(ValueError, match=r"holds images but no meta\.json"):
        write_dataset(copy, train=3, val=2, size=48, seed=7)


def test_the_command_says_what_is_wrong_without_a_traceback(tiny_set, tmp_path):
    command = [sys.executable, "-m", "training.synth", "--train", "1", "--val", "0", "--size", "16"]
    (tmp_path / "a_file").write_text("")
    refused = {
        "--out {tmp}/a_file": "is a file, not a folder",
        "--out {tmp}/x --size 0": "argument --size: must be at least 8, not 0",
        "--out {tmp}/x --train -2": "argument --train: must be at least 0, not -2",
        f"--out {tiny_set} --version 1 --seed 9": "made with other arguments or renderer: --train 3 (asked 1);",
        f"--out {tiny_set} --train 3 --val 2 --size 48 --seed 7": "generator_version '1' (asked '2'); lights differ.",
    }
    for args, message in refused.items():
        run = subprocess.run(command + args.format(tmp=tmp_path).split(), capture_output=True, text=True, timeout=120)
        assert run.returncode in (1, 2) and message in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_layout_and_meta(tiny_set):
    assert sorted(p.name for p in (tiny_set / "train" / "input").iterdir()) == [
        "Image000.png",
        "Image001.png",
        "Image002.png",
    ]
    assert sorted(p.name for p in (tiny_set / "validation" / "target").iterdir()) == ["Image003.png", "Image004.png"]
    meta = json.loads((tiny_set / "meta.json").read_text())
    assert meta["arguments"] == {"train": 3, "val": 2, "size": 48, "seed": 7, "supersample": 2}
    assert meta["lights"]["source"] == {"azimuth_deg": 0.0, "kelvin": 6500.0}
    assert meta["lights"]["target"] == {"azimuth_deg": 90.0, "kelvin": 4500.0}


def test_validation_scenes_differ_from_train_scenes(tiny_set):
    train = [np.asarray(Image.open(p)) for p in sorted((tiny_set / "train" / "input").iterdir())]
    for path in (tiny_set / "validation" / "input").iterdir():
        assert all(not np.array_equal(np.asarray(Image.open(path)), image) for image in train)


def test_light_colours_follow_the_planckian_locus():
    d65 = planckian_rgb(6500)
    assert np.allclose(d65 / d65.max(), 1.0, atol=0.06)
    warm = planckian_rgb(4500)
    assert warm[0] > warm[1] > warm[2]


def test_relighting_is_more_than_a_colour_change():
    """After the best global colour transfer for this very pair, moved shadows remain as a clear residual."""
    source, target = (torch.from_numpy(p) for p in raycast_pair(scene_rng(3, "train", 0), 96, LightSetup()))
    fitted = ColourTransfer.fit([(source, target)])
    residual = (fitted(source).int() - target.int()).abs().amax(-1)
    assert (residual > 40).float().mean() > 0.03
    assert not torch.equal(identity(source), target)


def test_loader_reads_the_generated_set_with_deterministic_crops(tiny_set):
    dataset = RelightPairs(tiny_set / "train", crop=32, seed=1)
    assert len(dataset) == 3
    source, target = dataset[0]
    assert source.shape == target.shape == (32, 32, 3)
    assert source.dtype == torch.uint8
    dataset.set_epoch(0)
    first = [dataset[i][0] for i in range(3)]
    dataset.set_epoch(1)
    second = [dataset[i][0] for i in range(3)]
    dataset.set_epoch(0)
    assert all(torch.equal(a, dataset[i][0]) for i, a in enumerate(first))
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))
    whole = RelightPairs(tiny_set / "validation", resize=24)
    assert whole[1][0].shape == (24, 24, 3)


def test_pairs_in_any_format_pillow_opens_are_read_and_other_files_left_out(tmp_path):
    rng = np.random.default_rng(1)
    for side in ("input", "target"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "notes.txt").write_text("not an image")
    for name in ("Image000.tif", "Image001.bmp"):
        for side in ("input", "target"):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / side / name)
    assert [pair.input.name for pair in discover_pairs(tmp_path)] == ["Image000.tif", "Image001.bmp"]


def save_rgba(path, pixels):
    Image.fromarray(np.concatenate([pixels, np.full((*pixels.shape[:2], 1), 255, np.uint8)], -1), "RGBA").save(path)


def test_loader_reads_full_vidit_names_and_adds_flipped_west_pairs(tmp_path):
    rng = np.random.default_rng(0)
    images = {}
    for name in ["Image014_6500_N", "Image014_4500_E", "Image014_4500_W", "Image015_6500_N", "Image015_4500_E",
                 "Image015_3500_S"]:  # fmt: skip
        images[name] = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        save_rgba(tmp_path / f"{name}.png", images[name])
    dataset = RelightPairs(tmp_path)
    assert len(dataset) == 3
    sources, targets = zip(*(dataset[i] for i in range(3)), strict=True)
    assert np.array_equal(sources[0].numpy(), images["Image014_6500_N"])
    assert np.array_equal(targets[0].numpy(), images["Image014_4500_E"])
    assert np.array_equal(sources[1].numpy(), images["Image014_6500_N"][:, ::-1])
    assert np.array_equal(targets[1].numpy(), images["Image014_4500_W"][:, ::-1])
    assert np.array_equal(targets[2].numpy(), images["Image015_4500_E"])


def test_empty_folder_is_named(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}: no image pairs"):
        discover_pairs(tmp_path)


def test_missing_target_is_named(tmp_path):
    for side in ("input", "target"):
        (tmp_path / side).mkdir()
    pixels = np.zeros((16, 16, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "input" / "Image000.png")
    with pytest.raises(DataError, match=r"Image000\.png: no target image"):
        RelightPairs(tmp_path)
    vidit = tmp_path / "vidit"
    vidit.mkdir()
    save_rgba(vidit / "Image001_6500_N.png", pixels)
    with pytest.raises(DataError, match=r"Image001_6500_N\.png: no target image .*Image001_4500_E\.png"):
        discover_pairs(vidit)


def test_pair_of_different_sizes_is_named(tmp_path):
    for side, size in (("input", 16), ("target", 24)):
        (tmp_path / side).mkdir()
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(tmp_path / side / "Image000.png")
    with pytest.raises(DataError, match=r"target/Image000.png: size \(24, 24\) differs"):
        RelightPairs(tmp_path)


def test_a_crop_larger_than_the_smallest_image_of_two_roots_names_that_image(tmp_path):
    roots = [tmp_path / "big", tmp_path / "small"]
    for root, size in zip(roots, (64, 32), strict=True):
        for side in ("input", "target"):
            (root / side).mkdir(parents=True)
            Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(root / side / "Image000.png")
    assert RelightPairs(roots, crop=32)[1][0].shape == (32, 32, 3)
    with pytest.raises(DataError, match=r"small/input/Image000\.png: crop 48 is larger than the image's side \(32"):
        RelightPairs(roots, crop=48)
    with pytest.raises(DataError, match=r"^crop 48 is larger than the images resized to 40x40$"):
        RelightPairs(roots, resize=40, crop=48)


def test_unreadable_file_is_named(tmp_path):
    for side in ("input", "target"):
        (tmp_path / side).mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "input" / "Image000.png")
    (tmp_path / "target" / "Image000.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match=r"target/Image000\.png: unreadable image"):
        RelightPairs(tmp_path)


def test_generator_v2_is_recorded_deterministic_and_its_own(tiny_set, tmp_path):
    write_dataset(tmp_path / "a", train=2, val=1, size=48, seed=7, version="2")
    write_dataset(tmp_path / "b", train=2, val=1, size=48, seed=7, version="2")
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["generator_version"] == "2"
    assert meta["lights"]["elevation_deg"] < json.loads((tiny_set / "meta.json").read_text())["lights"]["elevation_deg"]
    for path in sorted((tmp_path / "a").rglob("*.png")):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    v1 = np.asarray(Image.open(tiny_set / "train" / "input" / "Image000.png"))
    v2 = np.asarray(Image.open(tmp_path / "a" / "train" / "input" / "Image000.png"))
    assert not np.array_equal(v1, v2)


def test_generator_v2_keeps_moving_shadows_in_darker_scenes():
    source, target = (torch.from_numpy(p) for p in raycast_pair(scene_rng(3, "train", 0), 96, LIGHTS["2"], version="2"))
    fitted = ColourTransfer.fit([(source, target)])
    residual = (fitted(source).int() - target.int()).abs().amax(-1)
    assert (residual > 40).float().mean() > 0.03
    v1_source, _ = raycast_pair(scene_rng(3, "train", 0), 96, LIGHTS["1"])
    assert source.float().mean() < torch.from_numpy(v1_source).float().mean()
