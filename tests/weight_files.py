"""Odd weight files, for the tests that load them (tests/test_weights.py), swap to them (tests/test_weights_swap.py)
and relight with them (tests/test_command.py, tests/test_ray.py)."""

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from model import StackedDMSHN
from model.weights import FORMAT, FORMAT_VERSION, save_weights


def write_nan_weights(path: Path) -> None:
    """A valid Stacked DMSHN weight file whose every parameter is NaN, as a diverged run saves: it loads, and its
    output is NaN (black once converted to 8 bits)."""
    exploded = StackedDMSHN()
    with torch.no_grad():
        for parameter in exploded.parameters():
            parameter.fill_(float("nan"))
    save_weights(exploded, path, (-0.5, 0.5))


def write_dtype_torch_lacks(path: Path, model: nn.Module) -> None:
    """`model`'s tensors as a relight weight file, its first tensor declared F8_E8M0: one byte per element, a type
    safetensors parses (the microscaling scales of newer quantizers) and torch has none for."""
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    first = next(iter(state))
    state[first] = torch.zeros(state[first].shape, dtype=torch.uint8)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": type(model).__name__,
                "value_range": "-0.5,0.5"}  # fmt: skip
    save_file(state, str(path), metadata=metadata)
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header[first]["dtype"] = "F8_E8M0"  # as many bytes as U8: the offsets still hold
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])
