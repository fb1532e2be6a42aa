"""Generator v3: Mitsuba renders of VIDIT-like scenes under VIDIT's point light.

Everything renders with the scalar_rgb variant at 64x64 and a few samples per pixel, so these
tests need no LLVM library or GPU and run in seconds.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from training.baselines import ColourTransfer
from training.data import RelightPairs
from training.synth.layout import scene_rng
from training.synth.raycast import planckian_rgb
from training.synth.v3.meshes import box, placed, terrain
from training.synth.v3.render import (
    VARIANTS,
    LightBlocked,
    LightModel,
    RenderSettings,
    blackbody_rgb,
    choose_variant,
    light_positions,
    render_pair,
)
from training.synth.v3.scenes import Camera, Material, Scene, random_scene
from training.synth.v3.write import LIT_LEVEL, MIN_LIT, write_dataset_v3

mitsuba = pytest.importorskip("mitsuba")
ARGS = {"train": 2, "val": 1, "size": 64, "seed": 3, "spp": 4}


@pytest.fixture(scope="module", autouse=True)
def scalar_variant():
    mitsuba.set_variant("scalar_rgb")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth3")
    write_dataset_v3(root, **ARGS, workers=1, variant="scalar_rgb", progress=False)
    return root


def read(path):
    return np.array(Image.open(path).convert("RGB"))


def test_layout_meta_and_loader(tiny_set):
    assert sorted(p.name for p in (tiny_set / "train" / "input").iterdir()) == ["Image000.png", "Image001.png"]
    assert sorted(p.name for p in (tiny_set / "validation" / "target").iterdir()) == ["Image002.png"]
    meta = json.loads((tiny_set / "meta.json").read_text())
    assert meta["generator_version"] == "3"
    assert meta["arguments"] == ARGS
    assert meta["renderer"]["variant"] == "scalar_rgb"
    assert meta["lights"]["source"] == {"azimuth_deg": 0.0, "kelvin": 6500.0}
    assert meta["lights"]["target"] == {"azimuth_deg": 90.0, "kelvin": 4500.0}
    source, target = RelightPairs(tiny_set / "train")[1]
    assert source.shape == target.shape == (64, 64, 3)


def test_a_pair_differs_where_light_and_shadow_move(tiny_set):
    """After the best global colour transfer for each pair, moved light and shadows remain as a clear residual."""
    for path in sorted((tiny_set / "train" / "input").iterdir()):
        source, target = torch.from_numpy(read(path)), torch.from_numpy(read(tiny_set / "train" / "target" / path.name))
        residual = (ColourTransfer.fit([(source, target)])(source).int() - target.int()).abs().amax(-1)
        assert (residual > 30).float().mean() > 0.03, path.name


def test_no_pair_is_nearly_all_black(tiny_set):
    for path in sorted(tiny_set.rglob("*.png")):
        assert (read(path).max(-1) > LIT_LEVEL).mean() >= MIN_LIT, path


def test_resume_skips_finished_pairs_and_renders_the_rest_identically(tiny_set, tmp_path):
    copy = tmp_path / "set"
    shutil.copytree(tiny_set, copy)
    marker = np.full((64, 64, 3), 7, np.uint8)
    Image.fromarray(marker).save(copy / "train" / "input" / "Image000.png")
    for side in ("input", "target"):
        (copy / "validation" / side / "Image002.png").unlink()
    write_dataset_v3(copy, **ARGS, workers=1, variant="scalar_rgb", progress=False)
    assert np.array_equal(read(copy / "train" / "input" / "Image000.png"), marker)
    for side in ("input", "target"):
        rendered_again = (copy / "validation" / side / "Image002.png").read_bytes()
        assert rendered_again == (tiny_set / "validation" / side / "Image002.png").read_bytes()
    with pytest.raises(ValueError, match="other arguments"):
        write_dataset_v3(copy, **{**ARGS, "spp": 8}, workers=1, variant="scalar_rgb", progress=False)


def white_floor_scene(half: float, camera: Camera) -> Scene:
    scene = Scene("test", camera)
    scene.add(terrain(np.random.default_rng(0), half, 1, 0.0), Material(np.full((4, 4, 3), 0.8, np.float32), 1.0))
    return scene


# The camera 1 m up, 5 m back, fov 60: its horizon is 11.3 degrees above the centre, at row 0.33 * 64 = 21.
LOW_CAMERA = Camera((0.0, 1.0, 5.0), (0.0, 0.0, 0.0), 60.0)


def test_sky_and_floor_far_from_the_light_are_black():
    source, target = render_pair(white_floor_scene(500.0, LOW_CAMERA), 64, settings=RenderSettings(spp=8))
    for image in (source, target):
        assert image[:19].max() == 0  # the sky: no environment, no ambient term
        assert image[19:23].max() <= 2  # the floor 25 m and more from the light (10 light heights)
        assert image[28:36, 24:40].max(-1).min() > 60  # the floor around the centre point, under the light


def test_target_is_warmer_than_input_on_a_white_floor():
    source, target = render_pair(white_floor_scene(10.0, LOW_CAMERA), 64, settings=RenderSettings(spp=8))
    lit = (source.min(-1) > 30) & (target.min(-1) > 30) & (source.max(-1) < 250) & (target.max(-1) < 250)
    assert lit.mean() > 0.2
    ratio = [
        image[lit][:, 0].astype(float).mean() / image[lit][:, 2].astype(float).mean() for image in (source, target)
    ]
    assert 0.9 < ratio[0] < 1.1  # 6500 K is near D65, sRGB's white
    assert ratio[1] > 1.2 * ratio[0]


def test_blackbody_colours_agree_with_the_planckian_locus_fit():
    for kelvin in (2500, 4500, 6500):
        ours = np.array(blackbody_rgb(kelvin))
        fit = planckian_rgb(kelvin)
        assert np.allclose(ours / ours[1], fit / fit[1], rtol=0.03), kelvin
    warm = blackbody_rgb(4500)
    assert warm[0] > warm[1] > warm[2]


def test_lights_follow_vidit_around_the_centre_point():
    model = LightModel()
    camera, centre = np.array([1.0, 3.0, 10.0]), np.array([1.0, 0.0, 0.0])
    distance = np.linalg.norm(camera - centre)
    lights = light_positions(camera, centre, model)
    for position in lights.values():
        assert position[1] == pytest.approx(model.height * distance)
        assert np.hypot(*(position - centre)[[0, 2]]) == pytest.approx(model.radius * distance)
    assert lights["source"][2] < centre[2] and lights["source"][0] == pytest.approx(centre[0])  # North: far side
    assert lights["target"][0] > centre[0] and lights["target"][2] == pytest.approx(centre[2])  # East: right


def test_a_light_inside_a_closed_shape_is_refused():
    """A slab from 1.2 m up over the whole floor: the central ray reaches the floor, the lights (1.6 m up) are in it."""
    scene = white_floor_scene(10.0, LOW_CAMERA)
    scene.add(placed(box((30.0, 30.0, 30.0)), (0.0, 31.2, 0.0)), Material(np.full((4, 4, 3), 0.5, np.float32), 1.0))
    with pytest.raises(LightBlocked):
        render_pair(scene, 16, settings=RenderSettings(spp=1))


def test_a_light_close_to_a_surface_is_refused():
    """A wall 0.2 m behind the North light: its hot spot would send fireflies all over the floor."""
    scene = white_floor_scene(10.0, LOW_CAMERA)
    north = light_positions(LOW_CAMERA.origin, np.zeros(3), LightModel())["source"]
    wall = placed(box((2.0, 2.0, 0.05)), north - (0.0, 0.0, 0.25))
    scene.add(wall, Material(np.full((4, 4, 3), 0.5, np.float32), 1.0))
    with pytest.raises(LightBlocked, match="within"):
        render_pair(scene, 16, settings=RenderSettings(spp=1))


def test_scenes_are_deterministic_per_seed():
    first, again = random_scene(scene_rng(5, "train", 1)), random_scene(scene_rng(5, "train", 1))
    assert first.kind == again.kind and first.camera == again.camera
    assert len(first.parts) == len(again.parts)
    for (mesh, material), (mesh2, material2) in zip(first.parts, again.parts, strict=True):
        assert np.array_equal(mesh.vertices, mesh2.vertices) and np.array_equal(material.albedo, material2.albedo)
    other = random_scene(scene_rng(5, "train", 2))
    assert other.camera != first.camera


def test_the_variant_chosen_is_one_that_renders():
    variant, why = choose_variant()
    assert variant in VARIANTS and variant in mitsuba.variants() and why
