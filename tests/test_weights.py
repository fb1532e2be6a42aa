import errno
import json
import os
import re
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model import DMSHN, StackedDMSHN
from model.convert import load_authors_checkpoint
from model.convert import main as convert_main
from model.files import write_whole
from model.weights import WeightsError, load_weights, read_metadata, save_weights
from tests.authors_dmshn import build as build_authors
from tests.weight_files import write_dtype_torch_lacks


@pytest.fixture(scope="module")
def stacked():
    torch.manual_seed(0)
    return StackedDMSHN().eval()


def test_round_trip_in_float32_is_exact(tmp_path, stacked):
    path = tmp_path / "w.safetensors"
    save_weights(stacked, path, (0.0, 1.0), training={"steps": 3}, storage_dtype="float32")
    loaded, metadata = load_weights(path)
    assert metadata["architecture"] == "StackedDMSHN"
    assert metadata["value_range"] == (0.0, 1.0)
    assert metadata["training"] == {"steps": 3}
    for (name, a), (_, b) in zip(stacked.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_float16_storage_loads_to_any_dtype(tmp_path, stacked):
    path = tmp_path / "w16.safetensors"
    save_weights(stacked, path, (-0.5, 0.5))
    assert path.stat().st_size < 23_000_000
    model, _ = load_weights(path, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    model, _ = load_weights(path)
    original = stacked.net1.encoder_lv1.scale1[0].weight
    assert torch.equal(model.net1.encoder_lv1.scale1[0].weight, original.half().float())


def test_a_failed_save_leaves_the_old_file_and_no_partial_one(tmp_path, stacked):
    path = tmp_path / "w.safetensors"
    save_weights(stacked, path, (-0.5, 0.5))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the container's user (uid 10001) reads what root trained
    before = path.read_bytes()

    def disk_fills(partial):
        partial.write_bytes(before[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_whole(path, disk_fills)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]
    # The rename itself fails here (the name is a folder): the written partial file goes too.
    folder = tmp_path / "taken"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        save_weights(stacked, folder, (-0.5, 0.5))
    assert sorted(os.listdir(tmp_path)) == ["taken", "w.safetensors"] and not os.listdir(folder)


def test_metadata_is_read_without_tensors(tmp_path):
    path = tmp_path / "dmshn.safetensors"
    save_weights(DMSHN(), path, (-0.5, 0.5))
    metadata = read_metadata(path)
    assert metadata["architecture"] == "DMSHN"
    assert metadata["format_version"] == "1"
    assert metadata["training"] is None


def write_foreign(path):
    save_file({"weight": torch.zeros(3)}, str(path))


def write_truncated(path, stacked):
    save_weights(stacked, path, (-0.5, 0.5))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def write_overwritten_part_way(path, stacked):
    """Another file's first half written over this one in place (rsync --inplace, dd conv=notrunc, cut off):
    the size is right, the header is the other file's, the tensors half each."""
    save_weights(stacked, path, (-0.5, 0.5))
    other = path.with_name("other.safetensors")
    torch.manual_seed(1)
    save_weights(StackedDMSHN(), other, (-0.5, 0.5))
    data = other.read_bytes()
    with path.open("r+b") as file:
        file.write(data[: len(data) // 2])


def write_wrong_shape(path):
    state = {k: v.clone() for k, v in DMSHN().state_dict().items()}
    state["encoder_lv1.scale1.0.weight"] = torch.zeros(16, 3, 3, 3)
    meta = {"format": "relight-weights", "format_version": "1", "architecture": "DMSHN", "value_range": "-0.5,0.5"}
    save_file(state, str(path), metadata=meta)


def write_other_architecture(path):
    state = DMSHN().state_dict()
    meta = {"format": "relight-weights", "format_version": "1", "architecture": "StackedDMSHN", "value_range": "0,1"}
    save_file(state, str(path), metadata=meta)


def write_missing_tensor(path):
    state = dict(DMSHN().state_dict())
    del state["decoder_lv3.scale1.2.bias"]
    meta = {"format": "relight-weights", "format_version": "1", "architecture": "DMSHN", "value_range": "0,1"}
    save_file(state, str(path), metadata=meta)


def write_bad_header(path):
    header = json.dumps({"__metadata__": {"format": "relight-weights"}}).encode()
    path.write_bytes(struct.pack("<Q", len(header) + 100) + header)


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        (lambda p, m: None, "no such file"),
        (lambda p, m: p.mkdir(), "a folder, not a weight file"),
        (lambda p, m: p.write_text("hello, not weights"), "not a readable safetensors file"),
        (lambda p, m: write_foreign(p), "not a relight weight file"),
        (write_truncated, "not a readable safetensors file (cut short or grown"),
        (lambda p, m: save_weights(m, p, (-0.5, 0.5)) or p.write_bytes(p.read_bytes() + b"x"), "cut short or grown"),
        (write_overwritten_part_way, "do not match the SHA-256 its header records"),
        (lambda p, m: p.write_bytes(struct.pack("<Q", 200_000) + b"[" * 200_000), "bad header: RecursionError"),
        # Never opened: a read would wait for a writer forever; /dev/zero's would never end.
        (lambda p, m: os.mkfifo(p), "not a regular file"),
        (lambda p, m: p.symlink_to("/dev/zero"), "not a regular file"),
        (lambda p, m: write_bad_header(p), "not a readable safetensors file"),
        (lambda p, m: write_wrong_shape(p), "has shape (16, 3, 3, 3), expected (32, 3, 3, 3)"),
        (lambda p, m: write_other_architecture(p), "do not match StackedDMSHN"),
        (lambda p, m: write_missing_tensor(p), "1 missing"),
        (write_dtype_torch_lacks, "dtype F8_E8M0, which torch cannot hold"),
        # Unreadable: EIO from a failing disk; EACCES for a user the file's mode shuts out (root, running these
        # tests here, reads past chmod 000, so /proc/self/mem, whose offset 0 gives EIO, stands in).
        (lambda p, m: p.symlink_to("/proc/self/mem"), "cannot be read (Input/output error)"),
    ],
)
def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path, stacked, writer, message):
    path = tmp_path / "bad.safetensors"
    writer(path, stacked)
    with pytest.raises(WeightsError) as raised:
        load_weights(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def bytes_read() -> int:
    """What this process has read through read(2) and the like so far (/proc/self/io's rchar), in bytes."""
    return int(re.search(r"^rchar: (\d+)$", Path("/proc/self/io").read_text(), re.M).group(1))


@pytest.mark.parametrize("length", [0, 1 << 40], ids=["zero", "a TiB"])
def test_a_large_file_of_another_kind_is_refused_from_its_first_bytes(tmp_path, length):
    """A multi-GB checkpoint copied to RELIGHT_WEIGHTS by mistake was read whole, twice, before its refusal (3.7 GB
    held after a 3 GB file). Here a sparse 3 GiB file whose first 8 bytes give a header of `length`."""
    path = tmp_path / "big.safetensors"
    with path.open("wb") as file:
        file.write(struct.pack("<Q", length))
        file.truncate(3 << 30)
    before = bytes_read()
    with pytest.raises(WeightsError, match=f"a header of {length:,}"):
        load_weights(path)
    assert bytes_read() - before < 1 << 20


@pytest.mark.parametrize("stacked_checkpoint", [True, False])
@pytest.mark.parametrize("data_parallel", [True, False])
def test_authors_checkpoint_converts_and_gives_the_same_output(tmp_path, stacked_checkpoint, data_parallel):
    authors = build_authors(stacked_checkpoint)
    state = authors.state_dict()
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    checkpoint = tmp_path / "authors.pth"
    torch.save(state, checkpoint)
    output = tmp_path / "ours.safetensors"
    convert_main([str(checkpoint), str(output)])
    ours, metadata = load_weights(output)
    assert type(ours) is (StackedDMSHN if stacked_checkpoint else DMSHN)
    assert metadata["value_range"] == (-0.5, 0.5)
    x = torch.rand(2, 3, 48, 64) - 0.5
    with torch.no_grad():
        assert torch.allclose(ours(x), authors(x), atol=1e-6)


def test_foreign_checkpoint_key_is_named(tmp_path):
    checkpoint = tmp_path / "other.pth"
    torch.save({"encoder_lv1.layer4.weight": torch.zeros(1)}, checkpoint)
    with pytest.raises(WeightsError, match="layer4"):
        load_authors_checkpoint(checkpoint)


def test_convert_refuses_pickled_code(tmp_path):
    checkpoint = tmp_path / "evil.pth"
    torch.save({"x": object()}, checkpoint, _use_new_zipfile_serialization=True)
    result = subprocess.run(
        [sys.executable, "-m", "model.convert", str(checkpoint), str(tmp_path / "o.safetensors")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "not a loadable PyTorch checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_info_prints_parameters_flops_range_and_the_training_headline(tmp_path, stacked):
    path = tmp_path / "w.safetensors"
    earlier = {"command": "python -m training.train --preset v2", "config": {f"field{i}": i for i in range(500)}}
    training = {"steps": 700, "wall_time_s": 4750.4, "command": "python -m training.train --preset v3",
                "warm_restart_from": {"sha256": "8563f7f4aa19d3ac" + "0" * 48, "training": earlier},
                "validation_sets": {"data/synth3": {"StackedDMSHN": {"psnr": 22.8157, "ssim": 0.73090}}}}  # fmt: skip
    save_weights(stacked, path, (-0.5, 0.5), training=training)
    result = subprocess.run([sys.executable, "-m", "model.info", str(path)], capture_output=True, text=True, check=True)
    assert "10,848,786" in result.stdout
    assert "1.368 TFLOP" in result.stdout
    assert "[-0.5, 0.5]" in result.stdout
    assert "last run      700 steps in 1.3 h" in result.stdout
    assert "command       python -m training.train --preset v3" in result.stdout
    assert "started from  sha256 8563f7f4aa19 " in result.stdout
    assert "validation    data/synth3: 22.82 dB, SSIM 0.7309" in result.stdout
    assert len(result.stdout.splitlines()) == 10  # the earlier run's 500-field record is --training's, not here
    whole = subprocess.run([sys.executable, "-m", "model.info", str(path), "--training"], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert json.loads(whole.stdout) == training
    # Without an argument it describes the file the service would serve: RELIGHT_WEIGHTS.
    served = subprocess.run([sys.executable, "-m", "model.info"], capture_output=True, text=True, check=True,
                            env={**os.environ, "RELIGHT_WEIGHTS": str(path)})  # fmt: skip
    assert f"file          {path}" in served.stdout
