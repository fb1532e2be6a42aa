"""`relight IN OUT --ray` on a real local Ray (two CPUs, no cluster): the local command's bytes, failures, resuming.

Skipped where Ray is not installed (the `ray` extra); CI installs it.
"""

import csv
import os

import pytest
import torch

ray = pytest.importorskip("ray")

from service.codecs.imaging import ImageError, decode  # noqa: E402
from service.command import main as command  # noqa: E402
from service.command.ray_job import FAILURES, JobError, actor_shape, write_to_store  # noqa: E402
from tests.images import encode, scene, with_exif_orientation  # noqa: E402
from tests.weight_files import write_nan_weights  # noqa: E402

# Small tiles so that a 200x150 image is tiled; the pixel budget keeps several tiles to a forward pass.
SETTINGS = {"RELIGHT_DEVICE": "cpu", "RELIGHT_TILE_SIZE": "128", "RELIGHT_TILE_OVERLAP": "16",
            "RELIGHT_MAX_BATCH_PIXELS": "65536"}  # fmt: skip


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture
def settings(monkeypatch, weights_file):
    for key, value in {**SETTINGS, "RELIGHT_WEIGHTS": str(weights_file)}.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(scene(40, 56)))
    (folder / "b.png").write_bytes(encode(scene(40, 56, 1)))  # a's size: one forward pass for both
    (folder / "c.jpg").write_bytes(encode(scene(32, 32, 2), "JPEG", quality=95))
    (folder / "d.bmp").write_bytes(encode(scene(24, 24, 3), "BMP"))  # answered as PNG: d.png
    (folder / "e.webp").write_bytes(encode(scene(48, 32, 4), "WEBP", lossless=True))
    (folder / "f.jpg").write_bytes(with_exif_orientation(scene(24, 40, 5), 6))  # decoded upright: 40x24
    (folder / "big.png").write_bytes(encode(scene(200, 150, 6)))  # tiled: 200 > the 128 tile
    (folder / "broken.png").write_bytes(encode(scene(16, 16))[:60])
    (folder / "notes.txt").write_text("not an image")
    return folder


def relight(*args: str) -> int | str:
    with pytest.raises(SystemExit) as exit:
        command.main(list(args))
    return exit.value.code


def relight_on_one_thread(*args: str) -> int | str:
    """The local command with torch on one thread, as a CPU actor of one CPU runs it: oneDNN's fp32 sums can
    differ in the last bit between thread counts, which moves a few pixels by one level."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return relight(*args)
    finally:
        torch.set_num_threads(threads)


def test_ray_gives_the_local_commands_bytes_lists_failures_and_resumes(local_ray, settings, photos, tmp_path, capsys):
    local, out = tmp_path / "local", tmp_path / "ray"
    assert "1 of 8 images failed: broken.png" in relight_on_one_thread(str(photos), str(local))
    names = sorted(path.name for path in local.iterdir())
    assert names == ["a.png", "b.png", "big.png", "c.jpg", "d.png", "e.webp", "f.jpg"]
    capsys.readouterr()

    assert relight(photos.as_uri(), out.as_uri(), "--ray") == 1
    stderr = capsys.readouterr().err
    assert "7 images relit, 1 failed" in stderr and "images/s" in stderr
    assert sorted(path.name for path in out.iterdir()) == sorted([*names, FAILURES])
    for name in names:
        assert (out / name).read_bytes() == (local / name).read_bytes(), name
    with (out / FAILURES).open() as manifest:
        failures = list(csv.DictReader(manifest))
    assert [row["path"] for row in failures] == [f"{photos.as_uri()}/broken.png"]
    with pytest.raises(ImageError) as error:
        decode((photos / "broken.png").read_bytes(), 1 << 30)
    assert failures[0]["reason"] == error.value.detail

    (out / "a.png").unlink()
    (photos / "broken.png").unlink()
    untouched = (out / "c.jpg").stat().st_mtime_ns
    assert relight(str(photos), str(out), "--ray") == 0
    stderr = capsys.readouterr().err
    assert "skipping 6 images already relit" in stderr and "1 images relit, 0 failed" in stderr
    assert (out / "a.png").read_bytes() == (local / "a.png").read_bytes()
    assert (out / "c.jpg").stat().st_mtime_ns == untouched
    assert not (out / FAILURES).exists() and not [name for name in os.listdir(out) if name.endswith(".partial")]


def test_an_in_that_is_not_a_folder_is_refused_before_any_work(local_ray, settings, tmp_path):
    missing, photo = tmp_path / "nowhere", tmp_path / "photo.png"
    photo.write_bytes(encode(scene(16, 16)))
    assert relight(str(missing), str(tmp_path / "out"), "--ray") == f"relight: {missing}: no such folder"
    refused = relight(str(photo), str(tmp_path / "out"), "--ray")
    assert refused == f"relight: {photo}: a file, not a folder: relight one file without --ray"
    assert not (tmp_path / "out").exists()


def test_weights_the_service_would_refuse_stop_the_job_with_one_line(local_ray, photos, tmp_path, monkeypatch):
    """The relight command refused a file of NaNs; on Ray each actor refused it in its constructor instead."""
    weights = tmp_path / "nan.safetensors"
    write_nan_weights(weights)
    for key, value in {**SETTINGS, "RELIGHT_WEIGHTS": str(weights)}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    result = relight(str(photos), str(out), "--ray")
    assert isinstance(result, str) and result.startswith("relight: cannot use the weights: "), result
    assert not out.exists() or not os.listdir(out)


def test_a_gpu_asked_of_a_cluster_without_one_stops_the_job_with_one_line(
    local_ray, settings, photos, tmp_path, monkeypatch
):
    monkeypatch.setenv("RELIGHT_DEVICE", "cuda")
    result = relight(str(photos), str(tmp_path / "out"), "--ray")
    assert isinstance(result, str) and "RELIGHT_DEVICE=cuda asks for a GPU, but the actors get none" in result, result
    assert not (tmp_path / "out").exists()


def test_a_write_that_fails_leaves_no_partial_file(tmp_path):
    (tmp_path / "scene.png" / "in_the_way").mkdir(parents=True)  # a folder where the output goes: the rename fails
    with pytest.raises(OSError):
        write_to_store(str(tmp_path), "scene.png", b"relit bytes")
    assert sorted(os.listdir(tmp_path)) == ["scene.png"]


@pytest.mark.fast
@pytest.mark.parametrize(
    ("device", "asked", "resources", "shape"),
    [
        ("auto", (None, None), {"GPU": 4, "CPU": 32}, (1.0, 4)),  # one actor per GPU
        ("auto", (0.5, None), {"GPU": 2, "CPU": 32}, (0.5, 4)),
        ("auto", (None, None), {"CPU": 8}, (0.0, 1)),  # no GPU: one CPU actor
        ("cpu", (None, None), {"GPU": 4, "CPU": 8}, (0.0, 1)),  # RELIGHT_DEVICE=cpu: no GPU held idle
        ("cpu", (None, 3), {"CPU": 8}, (0.0, 3)),
    ],
)
def test_actor_shape_follows_the_cluster_and_the_device(device, asked, resources, shape):
    gpus_per_actor, actors = asked
    assert actor_shape(device, gpus_per_actor, actors, 1.0, resources) == shape


@pytest.mark.fast
def test_actor_shape_refuses_what_cannot_run_and_says_what_will_wait(capsys):
    with pytest.raises(JobError, match="RELIGHT_DEVICE=cuda asks for a GPU, but the actors get none"):
        actor_shape("cuda", None, None, 1.0, {"CPU": 8})
    with pytest.raises(JobError, match="2 CPU actors of 2 CPUs leave no CPU of the cluster's 4"):
        actor_shape("cpu", None, 2, 2.0, {"CPU": 4})
    assert actor_shape("auto", 1.0, None, 1.0, {"CPU": 8}) == (1.0, 1)  # an autoscaling cluster adds the GPU
    assert "the actors ask for 1 GPUs each and the cluster has 0 now" in capsys.readouterr().err
