"""Model throughput and accuracy of each fast path against the naive one, side by side in one run.

    python bench/model_throughput.py                                  # CPU: 256,512,1024 at batch 1,2
    python bench/model_throughput.py --size 512 --batch 1             # CPU, one shape, quickly
    python bench/model_throughput.py --sizes 1024 --batches 1,2,4,8,16                   # CUDA: the full grid
    python bench/model_throughput.py --sizes 1024 --batches 8,1 --variants bf16-cl-compiled

Variants (--variants picks some; the default is every one the device has):
  fp32               fp32 NCHW eager: the naive path every speed-up is against (TF32 convs on CUDA, torch's default)
  fp32-cl            fp32 channels_last eager
  fp32-cl-compiled   the same through torch.compile (CPU only)
  bf16-cl, fp16-cl   autocast + channels_last, eager (bf16 where the CPU has fast bf16; fp16 on CUDA only)
  bf16-cl-compiled   torch.compile: on the CPU Inductor's default mode, on CUDA "max-autotune-no-cudagraphs"
  bf16-cl-graphed    CUDA only: the whole pass captured as a CUDA graph once per shape, then replayed
Every compiled variant freezes the weights into the graph (Inductor `freezing`), as the service compiles.

Each row is the whole `relight` pass the service runs: uint8 pixels in (pinned on CUDA), uint8 out on the
host. Timing: CUDA events on the GPU, perf_counter on the CPU, median of the repeats after warm-up
passes at each shape (the first pass at a shape builds kernels or compiles). Accuracy and speed-up are
against the run's first variant (fp32 NCHW eager unless --variants leaves it out): PSNR of the 8-bit
outputs, and its time per image. TFLOP/s counts 1.37 TFLOP per 1024x1024 image, by area.

On the CPU every variant runs once per C-heap setting (--allocators), each in a fresh process:
mallopt cannot be undone, so glibc's defaults and model/allocator.py's reuse_freed_memory cannot share
one (bench/allocator.py measures the served path, on the engine's worker thread, the same way).
"""

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import StackedDMSHN  # noqa: E402
from model.allocator import reuse_freed_memory  # noqa: E402
from model.inference import pad_to_multiple, relight  # noqa: E402
from model.info import count_flops  # noqa: E402
from model.pixels import from_network, to_network  # noqa: E402
from model.precision import cpu_has_fast_bf16, cpu_kind  # noqa: E402
from model.weights import SHIPPED_WEIGHTS, load_weights  # noqa: E402
from training.metrics import psnr  # noqa: E402

ALLOCATORS = ("glibc defaults", "reuse_freed_memory")
CUDA_COMPILE_MODE = "max-autotune-no-cudagraphs"


@dataclass(frozen=True)
class Variant:
    key: str
    name: str
    autocast: torch.dtype | None
    channels_last: bool
    forward: str = "eager"  # eager | compiled | graphed


def variants(device: torch.device) -> list[Variant]:
    """Every variant this device has, the naive one first."""
    cuda = device.type == "cuda"
    found = [Variant("fp32", "fp32 NCHW eager", None, False), Variant("fp32-cl", "fp32 channels_last", None, True)]
    if not cuda:
        found.append(Variant("fp32-cl-compiled", "fp32 channels_last compiled", None, True, "compiled"))
    if cuda or cpu_has_fast_bf16():
        found.append(Variant("bf16-cl", "bf16 channels_last", torch.bfloat16, True))
    if cuda:
        found.append(Variant("fp16-cl", "fp16 channels_last", torch.float16, True))
    if cuda or cpu_has_fast_bf16():
        name = "bf16 channels_last compiled" + (f" ({CUDA_COMPILE_MODE})" if cuda else "")
        found.append(Variant("bf16-cl-compiled", name, torch.bfloat16, True, "compiled"))
    if cuda:
        found.append(Variant("bf16-cl-graphed", "bf16 channels_last CUDA graph", torch.bfloat16, True, "graphed"))
    return found


@torch.inference_mode()
def device_pass(model, pixels: torch.Tensor, value_range, autocast: torch.dtype | None, channels_last: bool):
    """relight() without its copies to and from the host (a capture may not synchronise): uint8 in, uint8 out,
    both on the device. Autocast's weight cache stays off: it would be freed under the captured graph."""
    height, width = pixels.shape[1:3]
    x = pad_to_multiple(to_network(pixels, value_range, torch.float32))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=autocast or torch.bfloat16, enabled=autocast is not None, cache_enabled=False):
        y = model(x)
    return from_network(y[..., :height, :width], value_range)


class Graphed:
    """The whole pass captured as a CUDA graph per input shape: each call copies the pixels into the graph's
    input, replays it and copies the answer back, so no kernel is launched from Python."""

    def __init__(self, model, value_range, variant: Variant):
        self.model, self.value_range, self.variant = model, value_range, variant
        self.graphs: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]] = {}

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if tuple(pixels.shape) not in self.graphs:
            self.graphs = {tuple(pixels.shape): self.capture(pixels)}  # one shape at a time: its memory pool only
        static_in, static_out, graph = self.graphs[tuple(pixels.shape)]
        static_in.copy_(pixels, non_blocking=True)
        graph.replay()
        return static_out.cpu()

    def capture(self, pixels: torch.Tensor):
        def forward():
            return device_pass(self.model, static_in, self.value_range, self.variant.autocast, True)

        static_in = pixels.to("cuda")
        # Warm up on a side stream, as torch.cuda.graphs asks: cuDNN picks its algorithms before the capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                forward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = forward()
        return static_in, static_out, graph


def timed(device: torch.device, fn: Callable[[], object]) -> float:
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


def load_model(args, device: torch.device):
    if args.weights:
        model, metadata = load_weights(args.weights, device)
        return model, metadata["value_range"], str(args.weights)
    torch.manual_seed(0)
    return StackedDMSHN().to(device).eval(), (-0.5, 0.5), "random weights"


def runners(base, value_range, device: torch.device, chosen: list[Variant]) -> dict[Variant, Callable]:
    """For each variant, a function from uint8 pixels (N, H, W, 3) on the host to the relit ones."""
    if any(v.forward == "compiled" for v in chosen):
        # As the service compiles: weights frozen into the graph (on the CPU Inductor prepacks them for oneDNN),
        # and one graph kept per shape.
        torch._inductor.config.freezing = True
        torch._dynamo.config.recompile_limit = 64
    found = {}
    for variant in chosen:
        # Module.to() converts in place: each variant gets its own copy of the weights.
        layout = torch.channels_last if variant.channels_last else torch.contiguous_format
        model = copy.deepcopy(base).to(memory_format=layout)
        if variant.forward == "graphed":
            found[variant] = Graphed(model, value_range, variant)
            continue
        if variant.forward == "compiled":
            mode = CUDA_COMPILE_MODE if device.type == "cuda" else None
            model = torch.compile(model, dynamic=False, mode=mode)

        def run(pixels, model=model, variant=variant):
            return relight(model, pixels, value_range, variant.autocast, variant.channels_last)

        found[variant] = run
    return found


def measure(args, device: torch.device) -> Iterator[dict]:
    """One row per (size, batch, variant): seconds per image, and PSNR against the first variant's output."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    base, value_range, _ = load_model(args, device)
    everything = variants(device)
    wanted = args.variants.split(",") if args.variants else [v.key for v in everything]
    unknown = set(wanted) - {v.key for v in everything}
    if unknown:
        raise SystemExit(f"error: no variant {', '.join(sorted(unknown))} on {device.type}; "
                         f"there are {', '.join(v.key for v in everything)}")  # fmt: skip
    chosen = [v for v in everything if v.key in wanted]
    generator = torch.Generator().manual_seed(0)
    for size in (int(s) for s in args.sizes.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)
            if cuda:
                pixels = pixels.pin_memory()
            reference = None
            for variant, run in runners(base, value_range, device, chosen).items():
                for _ in range(args.warmup):
                    output = run(pixels)
                seconds = statistics.median(timed(device, partial(run, pixels)) for _ in range(args.repeats))
                reference = output if reference is None else reference
                yield {"size": size, "batch": batch, "variant": variant.name, "seconds": seconds / batch,
                       "psnr": None if output is reference else psnr(output, reference)}  # fmt: skip
            if cuda:
                torch.cuda.empty_cache()


def children(args) -> Iterator[dict]:
    """measure() in a fresh process per C-heap setting, its rows as they come."""
    for allocator in args.allocators.split(","):
        weights = ["--weights", str(args.weights)] if args.weights else ["--random"]
        command = [sys.executable, __file__, "--device", "cpu", "--sizes", args.sizes, "--batches", args.batches,
                   "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--variants", args.variants,
                   "--child", allocator, *weights]  # fmt: skip
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
            for line in child.stdout:
                yield json.loads(line) | {"allocator": allocator}
        if child.returncode:
            raise SystemExit(f"error: the {allocator} run exited with {child.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", "--size", default="256,512,1024", help="square sides, comma-separated")
    parser.add_argument("--batches", "--batch", default=None, help="default: 1,2,4,8,16 on CUDA, 1,2 on the CPU")
    parser.add_argument("--variants", default="", help="comma-separated keys (above); default: all the device has")
    parser.add_argument("--allocators", default=",".join(ALLOCATORS), help="CPU only: C-heap settings to compare")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=None, help="default: 10 on CUDA, 2 on the CPU")
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS if SHIPPED_WEIGHTS.exists() else None)
    parser.add_argument("--random", action="store_true", help="seeded random weights instead of a weight file")
    parser.add_argument("--child", choices=ALLOCATORS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batches = args.batches or ("1,2,4,8,16" if cuda else "1,2")
    args.repeats = args.repeats or (10 if cuda else 2)
    args.weights = None if args.random else args.weights
    if args.child:
        if args.child == "reuse_freed_memory":
            reuse_freed_memory()
        for row in measure(args, device):
            print(json.dumps(row), flush=True)
        return
    flops_1024 = count_flops(StackedDMSHN)
    source = str(args.weights) if args.weights else "random weights"
    if cuda:
        print(
            f"# {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}, TF32 convolutions {torch.backends.cudnn.allow_tf32}"
        )
        print(f"# {source}")
    else:
        print(f"# {cpu_kind()}")
        print(f"# {torch.get_num_threads()} threads, {source}")
    print(f"# warm-up {args.warmup}, median of {args.repeats}; {flops_1024 / 1e12:.3f} TFLOP per 1024x1024 image")
    print("| size | batch | variant | C heap | ms/image | images/s | TFLOP/s | speed-up | PSNR vs fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    naive = {}
    for row in children(args) if not cuda else measure(args, device):
        seconds, size = row["seconds"], row["size"]
        naive.setdefault((size, row["batch"]), seconds)
        quality = row["psnr"]
        accuracy = "reference" if quality is None else "identical" if quality == math.inf else f"{quality:.1f} dB"
        tflops = flops_1024 * (size / 1024) ** 2 / seconds / 1e12
        print(f"| {size} | {row['batch']} | {row['variant']} | {row.get('allocator', 'n/a')} | {seconds * 1000:.1f} | "
              f"{1 / seconds:.2f} | {tflops:.3f} | {naive[size, row['batch']] / seconds:.2f}x | {accuracy} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
