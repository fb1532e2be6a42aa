"""model.transforms.Relight: the identity at p=0, the service's own pixels at p=1, on PIL images and tensors."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model.transforms import Relight
from service.codecs.imaging import decode
from service.inference.engine import Engine
from service.settings import Settings
from tests.images import encode, scene
from tests.test_structure import modules_loaded_by


@pytest.fixture(scope="module")
def engine(weights_file):
    return Engine(Settings(weights=weights_file, device="cpu", compile="off"))


def served(engine: Engine, png: bytes) -> np.ndarray:
    """What the service relights an upload to: its decoding, then its engine."""
    return engine.run(decode(png, 1 << 30).rgb[None]).images[0]


def test_at_p0_every_input_comes_back_untouched(weights_file):
    transform = Relight(weights_file, p=0.0)
    image = Image.fromarray(scene(24, 40))
    tensor = torch.from_numpy(scene(24, 40)).permute(2, 0, 1)
    for _ in range(5):
        assert transform(image) is image
        assert transform(tensor) is tensor


def test_at_p1_a_pil_image_gets_the_services_pixels_and_keeps_its_alpha(weights_file, engine):
    png = encode(scene(40, 56, 1))
    transform = Relight(weights_file, p=1.0)
    relit = transform(Image.open(io.BytesIO(png)))
    assert isinstance(relit, Image.Image) and relit.mode == "RGB"
    expected = served(engine, png)
    assert not np.array_equal(expected, scene(40, 56, 1))
    np.testing.assert_array_equal(np.asarray(relit), expected)

    alpha = np.linspace(0, 255, 40 * 56).astype(np.uint8).reshape(40, 56)
    rgba = Image.fromarray(np.dstack([scene(40, 56, 1), alpha]), "RGBA")
    relit_rgba = transform(rgba)
    assert relit_rgba.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(relit_rgba)[..., 3], alpha)
    np.testing.assert_array_equal(np.asarray(relit_rgba)[..., :3], expected)


def test_at_p1_tensors_keep_dtype_and_shape_and_get_the_services_pixels(weights_file, engine):
    pixels = [scene(32, 48, seed) for seed in (2, 3)]
    expected = np.stack([served(engine, encode(p)) for p in pixels])  # (2, H, W, 3)
    transform = Relight(weights_file, p=1.0)

    batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)  # uint8 (2, 3, H, W), a strided view
    relit = transform(batch)
    assert relit.dtype == torch.uint8 and relit.shape == batch.shape
    np.testing.assert_array_equal(relit.permute(0, 2, 3, 1).numpy(), expected)

    one = transform(batch[1].float() / 255)  # float (3, H, W) in [0, 1]
    assert one.dtype == torch.float32 and one.shape == (3, 32, 48)
    np.testing.assert_array_equal((one * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), expected[1])


def test_p_picks_how_often_an_image_is_relit(weights_file):
    transform = Relight(weights_file, p=0.5)
    image = torch.from_numpy(scene(16, 16)).permute(2, 0, 1)
    torch.manual_seed(2)  # draws 4 of 6 above 0.5: two forward passes, to keep the test cheap
    untouched = sum(transform(image) is image for _ in range(6))
    assert untouched == 4


def test_bad_arguments_are_refused(weights_file):
    with pytest.raises(ValueError, match="p must be in"):
        Relight(weights_file, p=1.5)
    transform = Relight(weights_file, p=1.0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        transform(torch.zeros(1, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 or floating-point"):
        transform(torch.zeros(3, 16, 16, dtype=torch.int32))
    with pytest.raises(TypeError, match="PIL image or a tensor"):
        transform(np.zeros((16, 16, 3), np.uint8))


def test_the_transform_loads_neither_service_nor_training():
    loaded = modules_loaded_by("import model.transforms")
    assert "model.transforms" in loaded
    assert not {name for name in loaded if name.split(".")[0] in {"service", "training"}}
