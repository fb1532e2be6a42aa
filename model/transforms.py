"""Relighting as a data transform: more training images under another light, or every input under one light.

`Relight` follows torchvision's v2 transforms (an `nn.Module`, applied with probability `p`, the
same type out as in), so it goes into a `v2.Compose` or a Dataset's `transform` as it is, without
this package needing torchvision. Its forward pass is the service's own (model.inference.relight,
with the reduced precision model.precision picks for the device), so a uint8 image comes out with
the pixels the service answers for it when it runs eager at dtype auto (its compiled forward pass differs by a level
here and there, 45 dB from fp32).
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from model.inference import relight
from model.precision import fast_autocast_dtype, fast_channels_last
from model.weights import SHIPPED_WEIGHTS, load_weights

ImageLike = torch.Tensor | Image.Image


class Relight(nn.Module):
    """Relight an image with probability `p`; otherwise return it unchanged (the same object).

    Inputs and outputs:
      - PIL image: RGB, or RGBA/LA with the alpha carried over unchanged (other modes are taken
        as RGB); the answer is a PIL image in RGB or RGBA.
      - tensor (..., 3, H, W), any leading batch dimensions: uint8 in 0..255, or floating point
        in [0, 1] (like torchvision's ToImage and ToDtype(scale=True)); the answer has the input's
        dtype, shape, device and tensor subclass (e.g. a tv_tensors.Image). Floating-point inputs
        are rounded to 8 bits on the way in, as the service's pixels are, and come back as
        multiples of 1/255.
    A call relights all of a tensor's images or none of them, drawn once from torch's global
    generator, as torchvision's random transforms do (DataLoader workers seed it per worker).

    The network runs on `device` in the precision the service uses there (bfloat16 on CUDA GPUs that
    have it, else float16; bfloat16 on CPUs with fast bf16; float32 elsewhere). Memory grows with
    H x W x batch: the service's tiling is not applied here, so relight big images through the service
    or the `relight` command.

    Raises WeightsError (a ValueError) for a weight file that cannot be loaded, ValueError for
    p outside [0, 1] or an input that is not 3-channel.
    """

    def __init__(self, weights: str | Path = SHIPPED_WEIGHTS, p: float = 0.5, device: str | torch.device = "cpu"):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p
        self.device = torch.device(device)
        network, metadata = load_weights(weights, self.device)
        self.value_range = metadata["value_range"]
        self.autocast_dtype = fast_autocast_dtype(self.device)
        self.channels_last = fast_channels_last(self.device, self.autocast_dtype)
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network.requires_grad_(False)

    def forward(self, image: ImageLike) -> ImageLike:
        if torch.rand(1).item() >= self.p:
            return image
        if isinstance(image, Image.Image):
            return self._relight_pil(image)
        if isinstance(image, torch.Tensor):
            return self._relight_tensor(image)
        raise TypeError(f"Relight takes a PIL image or a tensor, got {type(image).__name__}")

    def extra_repr(self) -> str:
        return f"p={self.p}, device={self.device}"

    def _relight_pil(self, image: Image.Image) -> Image.Image:
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
        rgb = np.array(image.convert("RGB"))  # writable: torch.from_numpy warns on read-only arrays
        relit = Image.fromarray(self._relight_pixels(torch.from_numpy(rgb)[None])[0].numpy(), "RGB")
        if alpha is not None:
            relit.putalpha(alpha)
        return relit

    def _relight_tensor(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim < 3 or image.shape[-3] != 3:
            raise ValueError(f"Relight takes tensors of shape (..., 3, H, W), got {tuple(image.shape)}")
        batch = image.reshape(-1, *image.shape[-3:])
        if image.dtype == torch.uint8:
            pixels = batch
        elif image.is_floating_point():
            pixels = batch.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        else:
            raise ValueError(f"Relight takes uint8 or floating-point tensors, got {image.dtype}")
        relit = self._relight_pixels(pixels.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if image.is_floating_point():
            relit = relit.float().div_(255)
        relit = relit.to(image.device, image.dtype).reshape(image.shape)
        return relit if type(image) is torch.Tensor else relit.as_subclass(type(image))

    def _relight_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> uint8 (N, H, W, 3) on the CPU, through the service's forward pass."""
        return relight(self.network, pixels, self.value_range, self.autocast_dtype, self.channels_last)
