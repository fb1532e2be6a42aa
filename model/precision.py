"""Which reduced precision is fast *and* accurate on a device: shared by training and serving."""

import os
import platform
import re
import shutil
from pathlib import Path

import torch

# The instruction sets that decide the CPU's fast path: AVX-512 and its bf16 dot products, Intel AMX tiles.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


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


def fast_channels_last(device: torch.device, autocast_dtype: torch.dtype | None) -> bool:
    """Whether the forward pass runs in channels_last (NHWC), the layout oneDNN and cuDNN are fast in.

    Reduced precision always does. In fp32 it depends on the CPU's vector width (bench/model_throughput.py,
    bench/RESULTS.md): 1.12-1.13x over NCHW on an AVX2-only CPU, 0.95-0.97x on an AVX-512 one, identical
    8-bit outputs on both; so fp32 runs channels_last where torch's fastest kernels are AVX2. fp32 on CUDA
    stays NCHW until measured there.
    """
    if autocast_dtype is not None:
        return True
    return device.type == "cpu" and torch.backends.cpu.get_cpu_capability() == "AVX2"


def compile_wanted(setting: str, device: torch.device) -> bool:
    """Whether to torch.compile (Inductor) the serving engine's forward pass or the training step.

    setting is "auto", "on" or "off" (RELIGHT_COMPILE, train's --compile); anything else raises ValueError.
    auto: on a CPU with fast bf16 (cpu_has_fast_bf16) and a C++ compiler at hand for Inductor ($CXX, else g++),
    where the engine's compiled bf16 forward pass measured 2.0x the eager one (the training step at 256x256,
    batch 2, measured 0.98x there on an AVX512-BF16 EPYC after 100 s of compiling, 2026-12-02, so training's v3
    preset says off); off on an AVX2-only CPU (fp32), where the compiled training step measured 1.03x the eager
    one at 512x512, batch 2 (0.98-1.07x from 128 to 512; bench/training_step.py); off on CUDA until measured
    there, and wherever Inductor would have no compiler.
    """
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"compile must be auto, on or off, not {setting!r}")
    if setting != "auto":
        return setting == "on"
    return device.type == "cpu" and cpu_has_fast_bf16() and shutil.which(os.environ.get("CXX", "g++")) is not None


def cpu_kind() -> str:
    """One line naming this CPU: model name, which of CPU_FLAGS it has (/proc/cpuinfo), cores, torch's fast path.

    Benchmarks print it above their tables and CI at the top of its log, so a result or a failure can be
    tied to the kind of machine it came from (AMX, AVX512-BF16 and AVX2-only CPUs have all been seen here).
    """
    cpuinfo = Path("/proc/cpuinfo")
    info = cpuinfo.read_text() if cpuinfo.is_file() else ""
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    flags_line = re.search(r"^flags\s*:\s*(.+)$", info, re.MULTILINE)
    flags = set(flags_line[1].split()) if flags_line else set()
    present = [flag for flag in CPU_FLAGS if flag in flags] or ["none of " + "/".join(CPU_FLAGS)]
    return (
        f"{name[1].strip() if name else platform.processor() or platform.machine()}: {', '.join(present)}; "
        f"{len(os.sched_getaffinity(0))} cores; torch {torch.__version__}, "
        f"capability {torch.backends.cpu.get_cpu_capability()}, fast bf16 {cpu_has_fast_bf16()}"
    )
