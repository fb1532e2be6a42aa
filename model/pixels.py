"""The one place that converts between 8-bit RGB pixels and the network's value range.

The authors train in [-0.5, 0.5] (ToTensor() - 0.5); other weight files may use
[0, 1]. The range travels in the weight file's metadata and is applied only here.
"""

import torch

ValueRange = tuple[float, float]

AUTHORS_VALUE_RANGE: ValueRange = (-0.5, 0.5)


def parse_value_range(text: str) -> ValueRange:
    """'-0.5,0.5' -> (-0.5, 0.5); the form used on command lines and in metadata."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"value range must be two numbers 'low,high', got {text!r}") from None
    if not low < high:
        raise ValueError(f"value range must have low < high, got {text!r}")
    return low, high


def format_value_range(value_range: ValueRange) -> str:
    return f"{value_range[0]:g},{value_range[1]:g}"


def to_network(pixels: torch.Tensor, value_range: ValueRange, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in value_range."""
    low, high = value_range
    x = pixels.permute(0, 3, 1, 2).to(dtype)
    return x * ((high - low) / 255.0) + low


def from_network(x: torch.Tensor, value_range: ValueRange) -> torch.Tensor:
    """float (N, 3, H, W) in value_range -> uint8 (N, H, W, 3), clamped and rounded."""
    low, high = value_range
    scaled = (x.float() - low) * (255.0 / (high - low))
    return scaled.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
