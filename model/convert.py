"""Import checkpoints in the authors' layout (DMPHN / DMSHN code) into our weight file.

    python -m model.convert IN.pth OUT.safetensors [--value-range -0.5,0.5]

The authors number their layers: encoder layers 1,2,3 5,6,7 9,10,11 and decoder
layers 13,14,16 17,18,20 21,22,24, a residual block being Sequential(conv, ReLU, conv).
"""

import argparse
import re
import sys
from pathlib import Path

import torch
from torch import nn

from model.dmshn import DMSHN, StackedDMSHN
from model.pixels import AUTHORS_VALUE_RANGE, format_value_range, parse_value_range
from model.weights import WeightsError, save_weights

ENCODER_LAYERS = {
    1: "scale1.0", 2: "scale1.1.body", 3: "scale1.2.body",
    5: "scale2.0", 6: "scale2.1.body", 7: "scale2.2.body",
    9: "scale3.0", 10: "scale3.1.body", 11: "scale3.2.body",
}  # fmt: skip
DECODER_LAYERS = {
    13: "scale3.0.body", 14: "scale3.1.body", 16: "scale3.2",
    17: "scale2.0.body", 18: "scale2.1.body", 20: "scale2.2",
    21: "scale1.0.body", 22: "scale1.1.body", 24: "scale1.2",
}  # fmt: skip
AUTHORS_KEY = re.compile(
    r"^(?P<net>net[12]\.)?(?P<part>encoder|decoder)_lv(?P<level>[123])\.layer(?P<layer>\d+)\.(?P<rest>.+)$"
)


def authors_key_to_ours(key: str) -> str:
    match = AUTHORS_KEY.match(key)
    layers = ENCODER_LAYERS if match and match["part"] == "encoder" else DECODER_LAYERS
    if not match or int(match["layer"]) not in layers:
        raise KeyError(key)
    return f"{match['net'] or ''}{match['part']}_lv{match['level']}.{layers[int(match['layer'])]}.{match['rest']}"


def import_authors_state_dict(state: dict[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """A DMSHN or StackedDMSHN (decided by the net1./net2. prefixes) holding the checkpoint's tensors."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    model: nn.Module = StackedDMSHN() if any(key.startswith("net1.") for key in state) else DMSHN()
    ours = {}
    for key, value in state.items():
        try:
            ours[authors_key_to_ours(key)] = value
        except KeyError:
            raise WeightsError(source, f"key {key!r} is not in the authors' DMSHN layout") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    if missing:
        raise WeightsError(source, f"{len(missing)} tensors of {type(model).__name__} missing, e.g. {missing[:3]}")
    for key, value in ours.items():
        if value.shape != expected[key].shape:
            raise WeightsError(source, f"{key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
    model.load_state_dict(ours)
    return model


def load_authors_checkpoint(path: str | Path) -> nn.Module:
    """The authors' PyTorch checkpoint (a state dict, possibly wrapped in one more dict or saved from DataParallel)
    as our network, read with weights_only=True (no pickled code runs). Raises WeightsError for a file that is
    not such a checkpoint or names a layer our network lacks."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for foreign or hostile files
        raise WeightsError(path, f"not a loadable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and len(state) == 1 and isinstance(next(iter(state.values())), dict):
        state = next(iter(state.values()))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(path, "expected a state dict of tensors")
    return import_authors_state_dict(state, str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="PyTorch state dict in the authors' layout")
    parser.add_argument("output", type=Path, help="relight weight file to write (.safetensors)")
    parser.add_argument(
        "--value-range",
        type=parse_value_range,
        default=AUTHORS_VALUE_RANGE,
        help="range the checkpoint was trained in (default: the authors' -0.5,0.5)",
    )
    parser.add_argument("--storage-dtype", choices=["float16", "float32"], default="float32")
    args = parser.parse_args(argv)
    try:
        model = load_authors_checkpoint(args.checkpoint)
    except WeightsError as error:
        sys.exit(f"error: {error}")
    save_weights(model, args.output, args.value_range, storage_dtype=args.storage_dtype)
    print(f"wrote {type(model).__name__} to {args.output} (value range {format_value_range(args.value_range)})")


if __name__ == "__main__":
    main()
