"""Which reduced precision is fast *and* accurate on a device: shared by training and serving."""

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN runs bf16 convolutions natively, several times faster than fp32."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def fast_autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype to use on `device`, or None where fp32 is the better choice."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None
