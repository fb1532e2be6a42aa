"""The `relight` command on real folders: locally through the service's code, and against a running service."""

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.images import encode, scene
from tests.server import running_server
from tests.weight_files import write_nan_weights


def relight(*args, env_weights=None, **settings) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "RELIGHT_WARMUP": "", "RELIGHT_WARMUP_TILE": "false"}
    env |= {f"RELIGHT_{key.upper()}": str(value) for key, value in settings.items()}
    if env_weights:
        env["RELIGHT_WEIGHTS"] = str(env_weights)
    return subprocess.run([sys.executable, "-m", "service.command", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(scene(40, 56)))
    (folder / "b.png").write_bytes(encode(scene(40, 56, 1)))
    (folder / "c.jpg").write_bytes(encode(scene(32, 32, 2), "JPEG", quality=95))
    (folder / "d.bmp").write_bytes(encode(scene(24, 24, 3), "BMP"))
    (folder / "big.png").write_bytes(encode(scene(200, 150, 4)))
    (folder / "broken.png").write_bytes(encode(scene(16, 16))[:60])
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_folder_is_relit_locally_resumed_and_a_broken_file_reported(photos, tmp_path, weights_file):
    out = tmp_path / "out"
    result = relight(photos, out, env_weights=weights_file, tile_size=128, tile_overlap=16, max_batch_pixels=65536)
    assert result.returncode == 1
    assert "broken.png" in result.stderr and "1 of 6 images failed" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "big.png", "c.jpg", "d.png"]
    assert Image.open(out / "c.jpg").format == "JPEG"
    assert Image.open(out / "big.png").size == (150, 200)  # tiled: 200 > the 128 tile
    relit = np.asarray(Image.open(out / "a.png"))
    assert relit.shape == (40, 56, 3) and not np.array_equal(relit, scene(40, 56))
    before = (out / "a.png").stat().st_mtime_ns
    (photos / "broken.png").unlink()
    again = relight(photos, out, env_weights=weights_file)
    assert again.returncode == 0, again.stderr
    assert "skipping 5 images already relit" in again.stderr
    assert (out / "a.png").stat().st_mtime_ns == before


def test_one_file_takes_the_format_of_its_output_name(tmp_path, weights_file):
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(scene(32, 48)))
    result = relight(photo, "-o", tmp_path / "relit.jpg", env_weights=weights_file)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "relit.jpg").format == "JPEG"


def test_one_file_and_a_folder_writes_into_the_folder(tmp_path, weights_file):
    photo, out = tmp_path / "photo.bmp", tmp_path / "out"
    photo.write_bytes(encode(scene(32, 48), "BMP"))
    out.mkdir()
    result = relight(photo, out, env_weights=weights_file)
    assert result.returncode == 0, result.stderr
    assert [path.name for path in out.iterdir()] == ["photo.png"]  # the folder path's answer name: BMP -> PNG
    refused = relight(photo, out, "-o", tmp_path / "relit.png", env_weights=weights_file)
    assert refused.returncode == 2 and "OUT_DIR is a folder; name one output file with -o" in refused.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_ends_with_one_line(photos, tmp_path, weights_file):
    result = relight(photos, tmp_path / "out", env_weights=weights_file, device="cuda")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert (
        result.stderr.strip().splitlines()[-1]
        == "relight: cannot start: RELIGHT_DEVICE=cuda but no CUDA device is available"
    )


@pytest.mark.parametrize("problem", ["nan", "missing"])
def test_weights_the_service_would_refuse_write_nothing(photos, tmp_path, problem):
    """A file of NaNs relit every image to black and exited 0; a missing file ended in a traceback."""
    weights = tmp_path / f"{problem}.safetensors"
    if problem == "nan":
        write_nan_weights(weights)
    out = tmp_path / "out"
    result = relight(photos, out, env_weights=weights)
    assert result.returncode == 1
    assert "cannot use the weights" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert {"nan": "not finite", "missing": "no such file"}[problem] in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_folder_through_a_running_service_retries_503s(photos, tmp_path, weights_file):
    (photos / "broken.png").unlink()
    out = tmp_path / "out"
    # A queue of one: with four uploads in flight most are refused at first and must be retried.
    with running_server(weights_file, tmp_path, max_queue=1, max_batch_size=1, max_wait_ms=0) as server:
        result = relight(photos, out, "--server", server.url, "--jobs", 4)
        refused = server.metric('relight_admissions_refused_total{reason="queue_full"}')
    assert result.returncode == 0, result.stderr
    assert refused >= 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "big.png", "c.jpg", "d.png"]
    assert Image.open(io.BytesIO((out / "c.jpg").read_bytes())).format == "JPEG"
