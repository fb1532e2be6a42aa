"""Image-quality metrics on 8-bit outputs, as the paper reports them (PSNR, SSIM; LPIPS where possible)."""

import torch
from pytorch_msssim import ssim


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB between uint8 images of one shape."""
    mse = (output.double() - target.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(255.0**2 / mse)).item()


def ssim_uint8(output: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM (Gaussian window 11, sigma 1.5) between uint8 (N, H, W, 3) or (H, W, 3) images."""
    a, b = (t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2).double() for t in (output, target))
    return float(ssim(a, b, data_range=255.0, size_average=True))
