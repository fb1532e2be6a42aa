"""Image-quality metrics on 8-bit outputs, as the paper reports them (PSNR, SSIM; LPIPS where possible),
and two of our own for real renders: how black the unlit regions stay, and structure after a colour fit.

Images are (H, W, 3) or (N, H, W, 3) tensors on the 0..255 scale: uint8, or float where a fit made them.
"""

import torch
from pytorch_msssim import ssim

# sRGB's primaries are BT.709's: luma Y' = 0.2126 R' + 0.7152 G' + 0.0722 B' on the gamma-encoded values.
BT709_LUMA = (0.2126, 0.7152, 0.0722)
# VIDIT's unlit regions (night sky, far background) sit at 0-3 in 8-bit sRGB; render noise stays below 4.
BLACK_LUMA = 4.0


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB between images of one shape on the 0..255 scale (peak 255)."""
    mse = (output.double() - target.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(255.0**2 / mse)).item()


def ssim_uint8(output: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM (Gaussian window 11, sigma 1.5, data range 255) between (N, H, W, 3) or (H, W, 3) images on the
    0..255 scale, uint8 or float."""
    a, b = (t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2).double() for t in (output, target))
    return float(ssim(a, b, data_range=255.0, size_average=True))


def luma(pixels: torch.Tensor) -> torch.Tensor:
    """BT.709 luma of (..., 3) sRGB pixels on the 0..255 scale: float64 (...), same scale."""
    return pixels.double() @ torch.tensor(BT709_LUMA, dtype=torch.float64)


def black_mask(source: torch.Tensor, threshold: float = BLACK_LUMA) -> torch.Tensor:
    """bool (...): where the input's luma is below `threshold` (8-bit units), i.e. what its light left black."""
    return luma(source) < threshold


def black_level_sum(output: torch.Tensor, source: torch.Tensor, threshold: float = BLACK_LUMA) -> tuple[float, int]:
    """(sum of the output's channel values, count of pixels) over the input's black pixels (`black_mask`).

    Sums, not a mean, so that a set's figure pools its pixels: `blacks_kept` over many images is
    sum(sums) / (3 sum(counts)), and a night frame weighs by its black area, not as one image.
    """
    mask = black_mask(source, threshold)
    return float(output[mask].double().sum()), int(mask.sum())


def unlit_level_sum(output: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> tuple[float, int]:
    """(sum of the output's channel values, count of pixels) where both the input and the target are black
    (`black_mask` of each): light reaches them in neither lighting, so the answer should stay as dark as the
    target there (issue 31's "unlit in both" target: within 3 levels of the target's mean). Sums, to pool."""
    mask = black_mask(source) & black_mask(target)
    return float(output[mask].double().sum()), int(mask.sum())


def blacks_kept(output: torch.Tensor, source: torch.Tensor, threshold: float = BLACK_LUMA) -> float | None:
    """Mean output level, in 8-bit units (0..255, all three channels averaged), over the pixels where the
    input's BT.709 luma is below `threshold` (4/255 by default): 0 is black kept black, the identity scores
    below 4 by construction. None where the input has no such pixel."""
    total, count = black_level_sum(output, source, threshold)
    return total / (3 * count) if count else None


def gain_offset_fit(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The output with each channel replaced by its least-squares affine fit to the target's channel.

    For channel c: (a_c, b_c) = argmin sum over pixels (a o_c + b - t_c)^2, i.e.
    a_c = cov(o_c, t_c) / var(o_c), b_c = mean(t_c) - a_c mean(o_c) (a_c = 0 for a flat channel), over the
    whole (H, W, 3) image; the result, a o_c + b clamped to 0..255, is float64 (H, W, 3). Scores computed on
    it ignore any global per-channel gain and offset: white balance, colour temperature, exposure and black
    level, leaving where light and shadow fall.
    """
    o, t = output.double().reshape(-1, 3), target.double().reshape(-1, 3)
    o_mean, t_mean = o.mean(0), t.mean(0)
    variance = (o - o_mean).pow(2).mean(0)
    covariance = ((o - o_mean) * (t - t_mean)).mean(0)
    gain = torch.where(variance > 0, covariance / variance.clamp(min=1e-12), 0.0)
    fitted = (o - o_mean) * gain + t_mean
    return fitted.clamp(0, 255).reshape(output.shape)


def structural_scores(output: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(PSNR in dB, SSIM) of one (H, W, 3) image against its target after `gain_offset_fit`."""
    fitted = gain_offset_fit(output, target)
    return psnr(fitted, target), ssim_uint8(fitted, target)
