"""The relight weight file: safetensors tensors plus metadata that can be read without them.

Metadata keys (all strings, as safetensors requires):
  format          "relight-weights"
  format_version  "1"
  architecture    a key of model.dmshn.ARCHITECTURES
  value_range     "low,high", the range the network was trained in
  training        JSON: data, stages, steps, metrics (absent for imported weights)
"""

import json
import os
from hashlib import sha256
from pathlib import Path
from typing import Any

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(partial: Path) -> None:
        save_file(tensors, str(partial), metadata=metadata)
        # safetensors creates its files 0600; the service's container runs as another user (uid 10001) and must
        # read them.
        os.chmod(partial, 0o644)

    # A kill mid-write (training's best.safetensors) never leaves half a file.
    write_whole(path, write)


def require_file(path: Path) -> None:
    """WeightsError unless `path` is a regular file (or a link to one), naming what is there instead."""
    if path.is_dir():
        raise WeightsError(path, "a folder, not a weight file")
    if not path.is_file():
        raise WeightsError(path, "no such file")


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
    """Metadata, tensors and SHA-256 from one read of the file's bytes; WeightsError for a file that is not one."""
    require_file(path)
    try:
        data = path.read_bytes()
    except OSError as error:  # not readable by this user (chmod, a volume's owner), or a failing disk
        raise WeightsError(path, f"cannot be read ({error.strerror or error})") from None
    try:
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_size])
        tensors = safetensors.torch.load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise WeightsError(path, f"not a readable safetensors file ({error})") from None
    except KeyError as error:  # safetensors.torch's map from its dtype names to torch's lacks the newest (F8_E8M0)
        raise WeightsError(path, f"a tensor has dtype {error.args[0]}, which torch cannot hold") from None
    if not isinstance(header, dict):
        raise WeightsError(path, "not a readable safetensors file (header is not a JSON object)")
    return header.get("__metadata__") or {}, tensors, sha256(data).hexdigest()


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

    Raises WeightsError (a ValueError) when the path is missing, a folder or unreadable, is not a safetensors
    file, fails read_metadata's checks (format, version, architecture, value_range, training), or has
    tensors whose names, shapes or (non-floating) dtypes do not fit the architecture. Errors of moving the
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
