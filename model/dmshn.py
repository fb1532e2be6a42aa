"""The Deep Multi-Scale Hierarchical Network (DMSHN) of MSR-Net and its stacked form.

Layers and wiring follow the authors' public DMSHN code (itself DMPHN's encoder and
decoder): residual blocks without normalisation, three image levels, bilinear
resampling with align_corners=False, the raw level-2 features passed up, and no
global residual.
"""

import torch
import torch.nn.functional as F
from torch import nn

# Input sides must be multiples of 16 (model.shapes.SIZE_MULTIPLE): level 3 sees H/4, its encoder halves that twice.


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus the input; no norm, no activation after the sum."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(inplace=True), conv3x3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """3 -> 32 @ H, 64 @ H/2, 128 @ H/4 channels; two residual blocks at each scale."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        c1, c2, c3 = widths
        self.scale1 = nn.Sequential(conv3x3(in_channels, c1), ResBlock(c1), ResBlock(c1))
        self.scale2 = nn.Sequential(conv3x3(c1, c2, stride=2), ResBlock(c2), ResBlock(c2))
        self.scale3 = nn.Sequential(conv3x3(c2, c3, stride=2), ResBlock(c3), ResBlock(c3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale3(self.scale2(self.scale1(x)))


class Decoder(nn.Module):
    """The encoder's mirror: transposed convolutions double the size twice, then 32 -> 3."""

    def __init__(self, out_channels: int = 3, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        c1, c2, c3 = widths
        self.scale3 = nn.Sequential(
            ResBlock(c3), ResBlock(c3), nn.ConvTranspose2d(c3, c2, kernel_size=4, stride=2, padding=1)
        )
        self.scale2 = nn.Sequential(
            ResBlock(c2), ResBlock(c2), nn.ConvTranspose2d(c2, c1, kernel_size=4, stride=2, padding=1)
        )
        self.scale1 = nn.Sequential(ResBlock(c1), ResBlock(c1), conv3x3(c1, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale1(self.scale2(self.scale3(x)))


def down(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)


def up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class DMSHN(nn.Module):
    """Three-level hierarchy: the coarsest level's residual and features feed the finer ones."""

    def __init__(self, channels: int = 3, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        self.encoder_lv1 = Encoder(channels, widths)
        self.encoder_lv2 = Encoder(channels, widths)
        self.encoder_lv3 = Encoder(channels, widths)
        self.decoder_lv1 = Decoder(channels, widths)
        self.decoder_lv2 = Decoder(channels, widths)
        self.decoder_lv3 = Decoder(channels, widths)

    def forward(self, x1: torch.Tensor) -> torch.Tensor:
        """Float (N, 3, H, W) in the weight file's value range (model.pixels) -> float (N, 3, H, W) in that range,
        the relit image itself (no residual is added to the input). The output is not clamped and can fall outside
        the range; model.pixels.from_network clamps it. The input's dtype must be the parameters' (or run under
        torch.autocast).

        H and W must be positive multiples of 16 (model.shapes.SIZE_MULTIPLE); other sizes raise RuntimeError
        (mismatched sizes in a skip sum, or an empty resample below 4 pixels). model.inference pads to them.
        """
        x2 = down(x1)
        x3 = down(x2)

        f3 = self.encoder_lv3(x3)
        r3 = self.decoder_lv3(f3)

        f2 = self.encoder_lv2(x2 + up(r3))
        r2 = self.decoder_lv2(f2 + up(f3))

        f1 = self.encoder_lv1(x1 + up(r2))
        return self.decoder_lv1(f1 + up(f2))


class StackedDMSHN(nn.Module):
    """Two DMSHNs in sequence; the second refines the first's output, with no other skip."""

    def __init__(self, channels: int = 3, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        self.net1 = DMSHN(channels, widths)
        self.net2 = DMSHN(channels, widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """As DMSHN.forward: float (N, 3, H, W) in the value range, H and W positive multiples of 16 (else
        RuntimeError) -> float (N, 3, H, W), unclamped. The first network's output reaches the second unclamped."""
        return self.net2(self.net1(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {"DMSHN": DMSHN, "StackedDMSHN": StackedDMSHN}
