"""Size-safe inference: any H x W in, the same H x W out, same-size images in one batch."""

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.pixels import ValueRange, from_network, to_network
from model.shapes import SIZE_MULTIPLE


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """Pad bottom and right up to a multiple of `multiple` by mirroring the image.

    Mirroring continues the picture across the border, so the network sees no
    artificial edge there and the cropped output shows no seam. A side too small
    to mirror that far is extended by repeating its edge pixels instead.
    """
    height, width = x.shape[-2:]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


@torch.inference_mode()
def relight(
    model: nn.Module,
    pixels: torch.Tensor,
    value_range: ValueRange,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Relight a batch of same-size uint8 images (N, H, W, 3); returns uint8 (N, H, W, 3) on the CPU.

    autocast_dtype runs the forward under torch.autocast (e.g. bfloat16 on an AMX CPU,
    float16 on a GPU); channels_last picks the memory format oneDNN and cuDNN prefer.
    """
    device, dtype = model_device_dtype(model)
    height, width = pixels.shape[1:3]
    x = to_network(pixels.to(device, non_blocking=True), value_range, dtype)
    x = pad_to_multiple(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    )
    with autocast:
        y = model(x)
    return from_network(y[..., :height, :width], value_range).cpu()


def relight_images(model: nn.Module, images: list[np.ndarray], value_range: ValueRange, **kwargs) -> list[np.ndarray]:
    """Relight uint8 (H, W, 3) arrays of any sizes; images of one size go through as one batch."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(image.shape[:2], []).append(index)
    results: list[np.ndarray | None] = [None] * len(images)
    for indices in by_size.values():
        batch = torch.from_numpy(np.stack([images[i] for i in indices]))
        for i, out in zip(indices, relight(model, batch, value_range, **kwargs).numpy(), strict=True):
            results[i] = out
    return results
