"""VGG16's convolutional features (torchvision's layout, without torchvision) for the perceptual loss.

The ImageNet weights cannot be downloaded at run time: they are read from a path the
user gives or from torchvision's cache, and their absence is a clear error.
"""

import os
from pathlib import Path

import torch
from torch import nn

VGG16_FILE = "vgg16-397923af.pth"
# torchvision's "D" configuration; "M" is a 2x2 max pool. features[:31] ends after pool5.
VGG16_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsMissing(FileNotFoundError):
    pass


def torchvision_cache_path() -> Path:
    """Where torchvision keeps the VGG16 file once downloaded: $TORCH_HOME/hub/checkpoints/vgg16-397923af.pth."""
    torch_home = (
        os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints" / VGG16_FILE


def find_vgg16_weights(path: str | Path | None = None) -> Path:
    """`path`, else torchvision's cache file, if it exists; raises VGGWeightsMissing (the perceptual loss needs the
    file and nothing may be downloaded)."""
    candidate = Path(path) if path else torchvision_cache_path()
    if not candidate.is_file():
        raise VGGWeightsMissing(
            f"VGG16 ImageNet weights not found at {candidate}. The perceptual loss needs them and nothing is "
            f"downloaded at run time: copy torchvision's {VGG16_FILE} to {torchvision_cache_path()} or pass "
            "--vgg_weights PATH, or train without it with --perceptual_weight 0."
        )
    return candidate


class VGG16Features(nn.Module):
    """Frozen VGG16 features up to pool5, taking images in [0, 1] and normalising them for ImageNet."""

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for spec in VGG16_LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, spec, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = spec
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        state = torch.load(find_vgg16_weights(weights), map_location="cpu", weights_only=True)
        self.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items() if "features." in k})
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features((images - self.mean) / self.std)
