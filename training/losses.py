"""The paper's losses (MSR-Net, Das, Shah, Dutta): L2 (stage 1), the combined loss (stage 2), and the Combined
Sobel Loss ablation.

The loss modules (L2Loss, CombinedLoss, CombinedSobelLoss) take network outputs and targets, float (N, 3, H, W),
in the network's value range (low, high); CombinedLoss maps them to [0, 1] itself for the terms that need it.
dark_l1 takes images already on [0, 1]; tv_loss and sobel_edges work in whatever range they are given.
"""

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import nn

from training.metrics import BLACK_LUMA, BT709_LUMA


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation, summed over the image as in the usual TV loss (hence the paper's tiny 2e-8 weight)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum()


SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_edges(x: torch.Tensor) -> torch.Tensor:
    """Per-channel horizontal and vertical Sobel responses, (N, 2C, H, W)."""
    channels = x.shape[1]
    kernel = torch.stack([SOBEL_X, SOBEL_X.T]).to(x).repeat(channels, 1, 1).unsqueeze(1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)


def dark_l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over all pixels of |output - target| where the target is unlit, 0 elsewhere; (N, 3, H, W) on [0, 1].

    Unlit: BT.709 luma below training.metrics.BLACK_LUMA / 255, the level below which VIDIT's unlit regions sit.
    """
    weights = torch.tensor(BT709_LUMA, dtype=target.dtype, device=target.device).view(1, 3, 1, 1)
    unlit = (target * weights).sum(dim=1, keepdim=True) < BLACK_LUMA / 255
    return ((output - target).abs() * unlit).mean()


class CombinedLoss(nn.Module):
    """w_l1 * L1 + w_ssim * SSIM + w_perceptual * |VGG(x) - VGG(y)|^2 + w_tv * TV; the paper's w_ssim is negative.

    w_l2 * L2 is ours (the paper's is 0): L1 is minimised by the median of what the pixel could be,
    L2 (and PSNR) by the mean, which scores better where a shadow's place is uncertain.

    SSIM is computed on the images mapped to [0, 1], 0 black (data range 1), as the metric is on 0..255:
    its luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) (Wang et al. 2004) assumes intensities
    that start at 0. In the network's [-0.5, 0.5] mid-grey sits at 0, and a black region lifted by 30/255
    scored 0.965 instead of 0.007 (weights v2 and before were trained so); on [0, 1] the term pulls a
    lift of 1-5/255 back toward black 17-60 times harder than L1 does per unit of weight.
    w_dark * dark L1 is ours too: the L1 distance on [0, 1] at the pixels whose target is unlit (BT.709 luma
    below training.metrics.BLACK_LUMA), averaged over all pixels. L2's pull on a lift of 10/255 is
    2 * 10/255 = 0.08 per pixel, too weak to bring unlit regions from 10 to 0 (issue 31: 11.1 -> 9.8 over
    150 steps); L1's is 1 per pixel at any lift, and the eye sees a lift in the dark (Weber's law), not
    its square.
    """

    def __init__(
        self,
        value_range: tuple[float, float],
        l1_weight: float = 1.0,
        ssim_weight: float = -5e-3,
        perceptual_weight: float = 0.006,
        tv_weight: float = 2e-8,
        vgg: nn.Module | None = None,
        l2_weight: float = 0.0,
        dark_weight: float = 0.0,
    ):
        super().__init__()
        if perceptual_weight and vgg is None:
            raise ValueError("a non-zero perceptual weight needs the VGG16 features")
        self.low, self.span = value_range[0], value_range[1] - value_range[0]
        self.vgg = vgg
        self.l1_weight, self.l2_weight, self.ssim_weight = l1_weight, l2_weight, ssim_weight
        self.dark_weight = dark_weight
        self.perceptual_weight, self.tv_weight = perceptual_weight, tv_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """output, target: float (N, 3, H, W) of one shape, in the network's value range -> a float32 scalar
        (0-dim), computed in float32 whatever the inputs' dtype; negative when the SSIM term outweighs the rest.

        L1, L2 and TV are taken in the value range, SSIM, dark L1 and VGG on [0, 1]; TV is a sum, not a mean,
        so its term grows with N x H x W (hence the tiny weight). SSIM is pytorch_msssim's (11-pixel Gaussian
        window, sigma 1.5, no padding): it raises ValueError for differing shapes and skips the smoothing, with
        a warning, along a side below 11 pixels. The VGG16 features need sides of at least 32 pixels (five 2x2
        poolings).
        """
        output, target = output.float(), target.float()
        loss = self.l1_weight * F.l1_loss(output, target)
        if self.l2_weight:
            loss = loss + self.l2_weight * F.mse_loss(output, target)
        unit_output, unit_target = ((t - self.low) / self.span for t in (output, target))
        loss = loss + self.ssim_weight * ssim(unit_output, unit_target, data_range=1.0, size_average=True)
        if self.dark_weight:
            loss = loss + self.dark_weight * dark_l1(unit_output, unit_target)
        if self.perceptual_weight:
            features = [self.vgg(unit_output), self.vgg(unit_target)]
            loss = loss + self.perceptual_weight * F.mse_loss(*features)
        return loss + self.tv_weight * tv_loss(output)


class CombinedSobelLoss(nn.Module):
    """The ablation's L_CSL: L2 plus an L1 loss between Sobel edge maps."""

    def __init__(self, sobel_weight: float = 1.0):
        super().__init__()
        self.sobel_weight = sobel_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """output, target: float (N, 3, H, W) of one shape, in the network's value range -> a float32 scalar
        (0-dim): mean squared error plus sobel_weight x the mean absolute difference of their Sobel maps, both
        in the value range's units (edges padded by replicating the border pixels)."""
        output, target = output.float(), target.float()
        edges = F.l1_loss(sobel_edges(output), sobel_edges(target))
        return F.mse_loss(output, target) + self.sobel_weight * edges


class L2Loss(nn.Module):
    """Stage 1's loss, and --loss l2's throughout: the mean squared error in the network's value range."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """output, target: float (N, 3, H, W) of one shape, in the network's value range -> a float32 scalar
        (0-dim), the mean over every element, computed in float32. Shapes that differ but broadcast are
        broadcast by F.mse_loss with only a UserWarning."""
        return F.mse_loss(output.float(), target.float())
