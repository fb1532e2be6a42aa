"""LPIPS (Zhang et al. 2018, AlexNet, v0.1) without torchvision, from weights already on disk.

Two files are needed and neither is downloaded: torchvision's AlexNet ImageNet weights
(alexnet-owt-7be5be79.pth in torchvision's cache, or RELIGHT_ALEXNET_WEIGHTS) and the
LPIPS linear layers (alex.pth v0.1, shipped inside the `lpips` pip package, or
RELIGHT_LPIPS_WEIGHTS).
"""

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from training.vgg import torchvision_cache_path

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
CHANNELS = (64, 192, 384, 256, 256)
# LPIPS's ScalingLayer: images in [-1, 1] are shifted and scaled to ImageNet statistics.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class LPIPSUnavailable(FileNotFoundError):
    pass


def alexnet_path() -> Path:
    return Path(os.environ.get("RELIGHT_ALEXNET_WEIGHTS") or torchvision_cache_path().with_name(ALEXNET_FILE))


def linear_layers_path() -> Path | None:
    if os.environ.get("RELIGHT_LPIPS_WEIGHTS"):
        return Path(os.environ["RELIGHT_LPIPS_WEIGHTS"])
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"


class LPIPS(nn.Module):
    """LPIPS v0.1 with AlexNet (Zhang et al. 2018), as the `lpips` package computes it: the perceptual distance
    between two uint8 (H, W, 3) images, a float; lower is closer."""

    def __init__(self, alexnet_state: dict, linear_state: dict):
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU()),
            nn.Sequential(nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU()),
            nn.Sequential(nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(384, 256, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()),
        ])  # fmt: skip
        self.linear = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        convs = [stage[-2] for stage in self.stages]
        for conv, index in zip(convs, (0, 3, 6, 8, 10), strict=True):
            conv.weight.data.copy_(alexnet_state[f"features.{index}.weight"])
            conv.bias.data.copy_(alexnet_state[f"features.{index}.bias"])
        for k, layer in enumerate(self.linear):
            layer.weight.data.copy_(linear_state[f"lin{k}.model.1.weight"])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, output: torch.Tensor, target: torch.Tensor) -> float:
        """Distance between two uint8 (H, W, 3) images."""
        device = self.shift.device
        a, b = (t.permute(2, 0, 1)[None].float().to(device) / 127.5 - 1.0 for t in (output, target))
        pairs = zip(self.features(a), self.features(b), strict=True)
        return float(sum(lin((fa - fb).pow(2)).mean() for lin, (fa, fb) in zip(self.linear, pairs, strict=True)))


def load_lpips(device: torch.device | str = "cpu") -> LPIPS:
    """LPIPS on `device` from the AlexNet ImageNet file (RELIGHT_ALEXNET_WEIGHTS, else torchvision's cache) and the
    linear layers (RELIGHT_LPIPS_WEIGHTS, else the `lpips` package's); nothing is downloaded. Raises
    LPIPSUnavailable if either is missing."""
    alexnet, linear = alexnet_path(), linear_layers_path()
    if not alexnet.is_file():
        raise LPIPSUnavailable(f"AlexNet ImageNet weights not found at {alexnet} (set RELIGHT_ALEXNET_WEIGHTS)")
    if linear is None or not linear.is_file():
        raise LPIPSUnavailable("LPIPS linear weights not found: pip install lpips, or set RELIGHT_LPIPS_WEIGHTS")
    alexnet_state = torch.load(alexnet, map_location="cpu", weights_only=True)
    linear_state = torch.load(linear, map_location="cpu", weights_only=True)
    return LPIPS(alexnet_state, linear_state).to(device)
