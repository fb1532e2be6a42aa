"""The relight weight file: safetensors tensors plus metadata that can be read without them.

Metadata keys (all strings, as safetensors requires):
  format          "relight-weights"
  format_version  "1"
  architecture    a key of model.dmshn.ARCHITECTURES
  value_range     "low,high", the range the network was trained in
  training        JSON: data, stages, steps, metrics (absent for imported weights)
  tensors_sha256  SHA-256 of the tensor bytes (the file after its header), so that a file overwritten in place
                  part-way is refused; files written before 2026-12-07 lack it and are read without the check
"""

import json
import os
import stat
from hashlib import sha256
from pathlib import Path
from typing import Any, BinaryIO

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from model.dmshn import ARCHITECTURES
from model.files import write_whole
from model.pixels import ValueRange, format_value_range, parse_value_range

# The weights the service serves when RELIGHT_WEIGHTS is not set (a source checkout's weights/).
SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "stacked_dmshn.safetensors"
FORMAT = "relight-weights"
FORMAT_VERSION = "1"
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
# safetensors' own bound on a header (MAX_HEADER_SIZE in its Rust crate): larger is not a safetensors file.
MAX_HEADER_BYTES = 100_000_000


class WeightsError(ValueError):
    """A weight file that cannot be served: names the file and what is wrong with it."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def save_weights(
    model: nn.Module,
    path: str | Path,
    value_range: ValueRange,
    training: dict[str, Any] | None = None,
    storage_dtype: str = "float16",
) -> None:
    """Write `model`'s state as a relight weight file: safetensors, tensors in `storage_dtype` (float16: 21.8 MB
    for Stacked DMSHN), metadata naming the format, architecture, value range and `training` (JSON).
    Atomic (a partial file renamed into place) and readable by every user (0644). Raises ValueError for an
    architecture not in model.dmshn.ARCHITECTURES."""
    architecture = type(model).__name__
    if architecture not in ARCHITECTURES:
        raise ValueError(f"cannot save {architecture}: known architectures are {sorted(ARCHITECTURES)}")
    dtype = STORAGE_DTYPES[storage_dtype]
    tensors = {name: t.detach().to("cpu", dtype).contiguous() for name, t in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "value_range": format_value_range(value_range),
    }
    if training is not None:
        metadata["training"] = json.dumps(training, sort_keys=True)
    # The tensor bytes do not depend on the metadata, so the checksum of a file serialised without it holds.
    unlabelled = safetensors.torch.save(tensors)
    metadata["tensors_sha256"] = sha256(memoryview(unlabelled)[8 + header_bytes(unlabelled) :]).hexdigest()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(partial: Path) -> None:
        save_file(tensors, str(partial), metadata=metadata)
        # safetensors creates its files 0600; the service's container runs as another user (uid 10001) and must
        # read them.
        os.chmod(partial, 0o644)

    # A kill mid-write (training's best.safetensors) never leaves half a file.
    write_whole(path, write)


def open_regular(path: Path) -> BinaryIO:
    """`path` open for reading; WeightsError unless it is a regular file (or a link to one), naming what is there
    instead. It is opened without blocking and checked on the open descriptor, so a FIFO (whose open and read wait
    for a writer) or a device (/dev/zero's read never ends) is refused unread, even one renamed in between."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise WeightsError(path, "no such file") from None
    except OSError as error:  # not readable by this user (chmod, a volume's owner), or a failing disk
        raise WeightsError(path, f"cannot be read ({error.strerror or error})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = "a folder, not a weight file" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
        raise WeightsError(path, kind)
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def require_file(path: Path) -> None:
    """WeightsError unless `path` is a regular file that this user can open (open_regular)."""
    open_regular(path).close()


def header_bytes(data: bytes) -> int:
    """The length of a safetensors header, from the 8-byte little-endian count that starts the file."""
    return int.from_bytes(data[:8], "little")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The file's metadata, checked, with value_range parsed and training decoded; no tensors are read."""
    path = Path(path)
    require_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(path, f"not a readable safetensors file ({error})") from None
    return checked_metadata(path, raw)


def checked_metadata(path: Path, raw: dict[str, str]) -> dict[str, Any]:
    if raw.get("format") != FORMAT:
        raise WeightsError(path, f"not a relight weight file (metadata 'format' is {raw.get('format')!r})")
    if raw.get("format_version") != FORMAT_VERSION:
        raise WeightsError(path, f"format version {raw.get('format_version')!r}, this code reads {FORMAT_VERSION!r}")
    if raw.get("architecture") not in ARCHITECTURES:
        raise WeightsError(path, f"unknown architecture {raw.get('architecture')!r}")
    try:
        value_range = parse_value_range(raw.get("value_range", ""))
        training = json.loads(raw["training"]) if "training" in raw else None
    except ValueError as error:
        raise WeightsError(path, f"bad metadata: {error}") from None
    return {**raw, "value_range": value_range, "training": training}


def read_file(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor], str]:
    """Metadata, tensors and SHA-256 (hex, of the whole file); WeightsError for a file that is not one. The header is
    read and the file's size checked against it first, so that a file of another kind (a multi-GB checkpoint copied
    to the path by mistake) is refused after reading a few bytes; then the whole file is read once, and its tensor
    bytes are checked against the header's tensors_sha256 where it has one."""
    try:
        with open_regular(path) as file:
            length, header = checked_header(path, file)
            file.seek(0)
            data = file.read()
    except OSError as error:  # not readable by this user (chmod, a volume's owner), or a failing disk
        raise WeightsError(path, f"cannot be read ({error.strerror or error})") from None
    try:
        tensors = safetensors.torch.load(data)
    except (SafetensorError, ValueError) as error:
        raise WeightsError(path, f"not a readable safetensors file ({error})") from None
    except KeyError as error:  # safetensors.torch's map from its dtype names to torch's lacks the newest (F8_E8M0)
        raise WeightsError(path, f"a tensor has dtype {error.args[0]}, which torch cannot hold") from None
    metadata = header.get("__metadata__") or {}
    recorded = metadata.get("tensors_sha256")
    if recorded is not None and sha256(memoryview(data)[8 + length :]).hexdigest() != recorded:
        raise WeightsError(
            path, "its tensors do not match the SHA-256 its header records (overwritten in place part-way, or damaged)"
        )
    return metadata, tensors, sha256(data).hexdigest()


def checked_header(path: Path, file: BinaryIO) -> tuple[int, dict[str, Any]]:
    """(header length in bytes, header) of the safetensors file open at its start; WeightsError unless the header is
    a JSON object of at most MAX_HEADER_BYTES whose tensors end where the file does. OSError from reading."""
    size = os.fstat(file.fileno()).st_size
    length = header_bytes(file.read(8))
    if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
        raise WeightsError(path, f"not a readable safetensors file ({size:,} bytes, a header of {length:,})")
    try:
        header = json.loads(file.read(length))
        described = 8 + length + max([0, *(entry["data_offsets"][1] for name, entry in header.items()
                                            if name != "__metadata__")])  # fmt: skip
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError, KeyError, IndexError, RecursionError) as error:
        raise WeightsError(path, f"not a readable safetensors file (bad header: {error!r})") from None
    if size != described:
        raise WeightsError(
            path, f"not a readable safetensors file (cut short or grown: {size:,} bytes, its header describes "
            f"{described:,})",
        )  # fmt: skip
    return length, header


def load_weights(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the file's architecture, check every tensor name and shape, and load it in eval mode.

    Returns (model, metadata). The model is on `device` with every parameter and buffer cast to `dtype` (from
    whatever floating dtype the file stores); this is the parameters' dtype, not an autocast dtype, which the caller
    applies around the forward pass (model.inference.relight's autocast_dtype). Gradients are left enabled.
    The metadata is the file's string metadata (read_metadata's form: `value_range` parsed to (low, high),
    `training` decoded from JSON or None) plus `sha256`, the hex digest of the bytes the tensors came from.
    The whole file is read into memory once (21.8 MB for Stacked DMSHN in float16).

    Raises WeightsError (a ValueError) when the path is missing, a folder, a FIFO or device, or unreadable, is not
    a safetensors file, is longer or shorter than its header describes, has tensor bytes that do not match its
    header's tensors_sha256, fails read_metadata's checks (format, version, architecture, value_range, training),
    or has tensors whose names, shapes or (non-floating) dtypes do not fit the architecture. Errors of moving the
    model to `device` (no CUDA, out of memory) come from torch unchanged.
    """
    path = Path(path)
    raw, tensors, digest = read_file(path)
    metadata = checked_metadata(path, raw) | {"sha256": digest}
    model = ARCHITECTURES[metadata["architecture"]]()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            path,
            f"tensors do not match {metadata['architecture']}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})",
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise WeightsError(
                path, f"tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
        if not tensor.is_floating_point():
            raise WeightsError(path, f"tensor {name} has dtype {tensor.dtype}, expected floating point")
    model.load_state_dict(tensors)
    model.to(device=device, dtype=dtype).eval()
    return model, metadata
