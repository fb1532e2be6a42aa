"""Model throughput and accuracy of each fast path against the naive one, side by side in one run.

    python bench/model_throughput.py                       # CPU: sizes 256,512,1024, batches 1,2
    python bench/model_throughput.py --batches 1,2,4,8     # the full grid (GPU default)
    python bench/model_throughput.py --compile             # add torch.compile variants

Variants: fp32 NCHW eager (the naive path every ratio is against), fp32 channels_last,
bf16 and fp16 autocast with channels_last (fp16 on CUDA only), optionally compiled.
Timing: CUDA events on the GPU, perf_counter on the CPU, after warm-up passes at each shape
(the first pass at a new shape builds kernels and is several times slower). Accuracy: PSNR
of each variant's 8-bit output against the fp32 one. Effective TFLOP/s counts 1.37 TFLOP per
1024x1024 image, scaled by area.
"""

import argparse
import copy
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from model import StackedDMSHN
from model.inference import relight
from model.info import count_flops
from model.precision import cpu_has_fast_bf16
from model.weights import SHIPPED_WEIGHTS, load_weights
from training.metrics import psnr


@dataclass(frozen=True)
class Variant:
    name: str
    autocast: torch.dtype | None
    channels_last: bool
    compiled: bool = False


def variants(device: torch.device, compile_too: bool) -> list[Variant]:
    found = [Variant("fp32 NCHW eager", None, False), Variant("fp32 channels_last", None, True)]
    if device.type == "cuda" or cpu_has_fast_bf16():
        found.append(Variant("bf16 channels_last", torch.bfloat16, True))
    if device.type == "cuda":
        found.append(Variant("fp16 channels_last", torch.float16, True))
    if compile_too:
        found += [Variant(v.name + " compiled", v.autocast, v.channels_last, True) for v in found if v.channels_last]
    return found


def timed(device: torch.device, fn) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--batches", default=None, help="default: 1,2,4,8 on CUDA, 1,2 on the CPU")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=None, help="default: 10 on CUDA, 2 on the CPU")
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS if SHIPPED_WEIGHTS.exists() else None)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd variants")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batches = [int(b) for b in (args.batches or ("1,2,4,8" if cuda else "1,2")).split(",")]
    repeats = args.repeats or (10 if cuda else 2)
    if cuda:
        torch.backends.cudnn.benchmark = True
    if args.weights:
        base, metadata = load_weights(args.weights, device)
        value_range, source = metadata["value_range"], str(args.weights)
    else:
        torch.manual_seed(0)
        base, value_range, source = StackedDMSHN().to(device).eval(), (-0.5, 0.5), "random weights"
    flops_1024 = count_flops(StackedDMSHN)
    name = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()} CPU"
    print(f"# Stacked DMSHN on {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, {source}")
    print(f"# warm-up {args.warmup}, repeats {repeats} (median); {flops_1024 / 1e12:.3f} TFLOP per 1024x1024 image")
    print("| size | batch | variant | ms/image | images/s | TFLOP/s | speed-up | PSNR vs fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    if args.compile:
        # As the service compiles: weights frozen into the graph, so Inductor prepacks them for oneDNN.
        torch._inductor.config.freezing = True
    models = {}
    for variant in variants(device, args.compile):
        # Module.to() converts in place: each variant gets its own copy of the weights.
        layout = torch.channels_last if variant.channels_last else torch.contiguous_format
        model = copy.deepcopy(base).to(memory_format=layout)
        models[variant] = torch.compile(model, dynamic=False) if variant.compiled else model
    generator = torch.Generator().manual_seed(0)
    for size in (int(s) for s in args.sizes.split(",")):
        for batch in batches:
            pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)
            if cuda:
                pixels = pixels.pin_memory()
            reference, naive_s = None, None
            for variant, model in models.items():

                def run(model=model, variant=variant, pixels=pixels):
                    return relight(model, pixels, value_range, variant.autocast, variant.channels_last)

                for _ in range(args.warmup):
                    output = run()
                seconds = statistics.median(timed(device, run) for _ in range(repeats)) / batch
                if reference is None:
                    reference, naive_s = output, seconds
                accuracy = "reference" if output is reference else f"{psnr(output, reference):.1f} dB"
                tflops = flops_1024 * (size / 1024) ** 2 / seconds / 1e12
                print(f"| {size} | {batch} | {variant.name} | {seconds * 1000:.1f} | {1 / seconds:.2f} | "
                      f"{tflops:.3f} | {naive_s / seconds:.2f}x | {accuracy} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
