"""The real-render figures of training.evaluate: blacks kept, and structure after a per-channel gain/offset fit."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from model import DMSHN
from model.inference import relight
from tests.images import scene
from training.baselines import ColourTransfer, identity
from training.data import RelightPairs
from training.error_bands import error_bands, format_bands
from training.evaluate import black_frame_levels, dark_pixels, evaluate, format_table
from training.evaluate import main as evaluate_main
from training.identity_init import colour_init_, identity_init_
from training.metrics import black_mask, blacks_kept, gain_offset_fit, psnr, ssim_uint8, structural_scores


def night_frame(size: int = 64, seed: int = 0) -> torch.Tensor:
    """uint8 (size, size, 3): a lit picture in the lower half, black (0) above, as a VIDIT night sky."""
    pixels = scene(size, size, seed).copy()
    pixels[: size // 2] = 0
    return torch.from_numpy(pixels)


def lifted(level: int):
    def method(pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.int() + level).clamp(0, 255).to(torch.uint8)

    return method


def test_black_is_luma_below_4_of_255():
    pixels = torch.tensor([[[3, 3, 3], [4, 4, 4], [0, 0, 13], [0, 5, 0], [255, 0, 0]]], dtype=torch.uint8)
    # BT.709 luma: 3, 4, 0.94, 3.58, 54.2
    assert black_mask(pixels).tolist() == [[True, False, True, True, False]]


def test_the_identity_keeps_the_black_region_at_0_and_a_lift_shows_in_8_bit_units():
    frame = night_frame()
    assert blacks_kept(identity(frame), frame) == 0.0
    assert blacks_kept(lifted(30)(frame), frame) == 30.0
    lit = torch.from_numpy(scene(64, 64))  # every pixel at 25/255 or more
    assert blacks_kept(lit, lit) is None


def test_a_gain_and_offset_changed_copy_scores_ssim_1_after_the_fit():
    target = torch.from_numpy(scene(64, 64, 1))
    gains, offsets = torch.tensor([0.55, 0.8, 1.1]), torch.tensor([60.0, 30.0, -5.0])
    copy = (target.double() * gains + offsets).round().clamp(0, 255).to(torch.uint8)
    assert ssim_uint8(copy, target) < 0.95 and psnr(copy, target) < 25
    structural_psnr, structural_ssim = structural_scores(copy, target)
    assert structural_ssim == pytest.approx(1.0, abs=1e-3)  # what is left is the copy's rounding to 8 bits
    assert structural_psnr > 50
    fitted = gain_offset_fit(copy, target)
    assert fitted.dtype == torch.float64 and fitted.shape == target.shape
    # Light in another place is not a gain or an offset: a shifted copy keeps its error through the fit.
    moved = torch.roll(target, 8, dims=1)
    assert structural_scores(moved, target)[1] < 0.9
    assert structural_scores(moved, target)[0] == pytest.approx(psnr(moved, target), abs=1.0)


def test_a_flat_channel_fits_to_the_targets_mean():
    flat = torch.full((8, 8, 3), 7, dtype=torch.uint8)
    target = torch.from_numpy(scene(8, 8))
    assert torch.allclose(gain_offset_fit(flat, target), target.double().mean((0, 1)).expand(8, 8, 3))


def write_split(root, pairs):
    for side in ("input", "target"):
        (root / side).mkdir(parents=True)
    for index, (source, target) in enumerate(pairs):
        Image.fromarray(source.numpy()).save(root / "input" / f"Image{index:03d}.png")
        Image.fromarray(target.numpy()).save(root / "target" / f"Image{index:03d}.png")


@pytest.fixture(scope="module")
def night_set(tmp_path_factory):
    """Two 64x64 night frames relit by a gain, their black halves kept black; train and validation alike."""
    root = tmp_path_factory.mktemp("night")
    frames = [night_frame(64, seed) for seed in (0, 1)]
    pairs = [(frame, (frame.double() * torch.tensor([0.9, 0.75, 0.6])).round().to(torch.uint8)) for frame in frames]
    write_split(root / "train", pairs)
    write_split(root / "validation", pairs)
    return root


def test_evaluate_reports_blacks_and_structure_for_each_method(night_set):
    dataset = RelightPairs(night_set / "validation")
    lift = ColourTransfer(np.eye(3), np.full(3, 0.04))  # black -> round(10.2) = 10
    rows = {name: evaluate(method, dataset) for name, method in (("identity", identity), ("lift", lift))}
    assert rows["identity"]["blacks_kept"] == 0.0
    assert rows["lift"]["blacks_kept"] == 10.0
    assert rows["identity"]["unlit"] == 0.0 and rows["lift"]["unlit"] == 10.0  # black in input and target alike
    # The target is the input times a per-channel gain: after the fit, the identity's structure is exact.
    assert rows["identity"]["structural_ssim"] == pytest.approx(1.0, abs=2e-3)
    assert rows["identity"]["ssim"] < rows["identity"]["structural_ssim"]
    dark = {"fraction": 0.5, "target_level": 0.0, "unlit_fraction": 0.5, "unlit_target_level": 0.0}
    assert dark_pixels(dataset) == dark
    # The bands come from the outputs the scores were taken on: the identity's are the inputs' own error.
    with_bands = evaluate(identity, dataset, bands=True)
    assert with_bands["bands"] == error_bands(dataset[i] for i in range(len(dataset)))
    assert with_bands.keys() - rows["identity"].keys() == {"bands"}
    assert black_frame_levels(identity) == {"flat": 0.0, "beside_patch": 0.0}
    assert black_frame_levels(lift) == {"flat": 10.0, "beside_patch": 10.0}


def test_the_colour_init_without_offset_keeps_black_black(night_set):
    """The fit through the origin maps black to black; the untrained network it initialises does too."""
    train = RelightPairs(night_set / "train")
    lifted_pairs = [(source, lifted(12)(target)) for source, target in (train[0], train[1])]
    with_offset, without = ColourTransfer.fit(lifted_pairs), ColourTransfer.fit(lifted_pairs, offset=False)
    black = torch.zeros(4, 4, 3, dtype=torch.uint8)
    assert with_offset(black).float().mean() > 5
    assert without(black).max() == 0
    model = DMSHN()
    identity_init_(model)
    colour_init_(model, without, (-0.5, 0.5))
    assert black_frame_levels(lambda pixels: relight(model, pixels[None], (-0.5, 0.5))[0], 32)["flat"] == 0.0


def test_evaluate_reports_the_new_figures(night_set, weights_file, capsys):
    evaluate_main(["--weights", str(weights_file), "--data", str(night_set), "--precision", "fp32", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["dark_pixels"] == {"fraction": 0.5, "target_level": 0.0, "unlit_fraction": 0.5,
                                     "unlit_target_level": 0.0}  # fmt: skip
    network = report["rows"]["StackedDMSHN"]
    assert 0 <= network["blacks_kept"] <= 255 and 0 <= network["black_frame"]["flat"] <= 255
    table = format_table(report["rows"], None, report["dark_pixels"])
    for words in ("sPSNR", "sSSIM", "black", "unlit", "frame", "50.0% of pixels, the target's level there 0.0"):
        assert words in table
    identity_row = next(line for line in table.splitlines() if line.startswith("identity"))
    assert identity_row.split()[6:9] == ["0.0", "0.0", "0.0"]


def test_error_bands_place_a_darkened_east_half_in_the_east_columns_and_the_lit_bands():
    """Targets: a flat grey of level 100 (the 40-120 band); outputs: the same, 20 levels darker in the right half."""
    target = torch.full((16, 32, 3), 100, dtype=torch.uint8)
    output = target.clone()
    output[:, 16:] = 80
    bands = error_bands([(output, target), (output, target)])
    by_luma = {row["band"]: row for row in bands["luma"]}
    assert by_luma["40-120"]["pixel_share"] == 1.0 and by_luma["40-120"]["squared_error_share"] == pytest.approx(1.0)
    assert by_luma["40-120"]["mean_error"] == pytest.approx(-10.0) and by_luma["40-120"]["rmse"] == pytest.approx(
        200**0.5
    )
    assert by_luma["0-4"]["pixel_share"] == 0.0 and by_luma["0-4"]["mean_error"] is None
    west, east = bands["columns"][:4], bands["columns"][4:]
    assert all(row["mean_error"] == 0.0 and row["squared_error_share"] == 0.0 for row in west)
    assert all(row["mean_error"] == pytest.approx(-20.0) and row["pixel_share"] == 0.125 for row in east)
    text = format_bands(bands)
    assert "-20.0" in text and "n/a" in text
    with pytest.raises(ValueError, match="no pixels"):
        error_bands([])


def test_evaluate_prints_the_bands_of_the_network(night_set, weights_file, capsys):
    command = ["--weights", str(weights_file), "--data", str(night_set), "--precision", "fp32", "--bands"]
    evaluate_main(command)
    printed = capsys.readouterr().out
    assert "where the network's error lies:" in printed and "columns, west to east" in printed
    evaluate_main([*command, "--json"])
    bands = json.loads(capsys.readouterr().out)["rows"]["StackedDMSHN"]["bands"]
    assert [row["band"] for row in bands["luma"]] == ["0-4", "4-8", "8-40", "40-120", "120-256"]
    assert sum(row["pixel_share"] for row in bands["columns"]) == pytest.approx(1.0)
