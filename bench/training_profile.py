"""Where a training step's time goes: torch.profiler over the v3 preset's step, grouped into the step's parts.

    python bench/training_profile.py                       # 256x256 crops, batch 2, as the v3 preset trains
    python bench/training_profile.py --isa avx2            # as on an AVX2-only CPU, on a newer one (see below)
    python bench/training_profile.py --variants reference,mkldnn-off   # settings against each other

The step is training.train's own TrainingStep (the v3 preset's loss: L2 - 5e-3 SSIM + dark L1, Adam, clip 1.0,
channels_last) on a Stacked DMSHN with the shipped weights. After --warmup untimed steps, --rounds rounds
time --steps steps of each variant in turn (so that other load falls on all alike; the median round counts),
without the profiler, whose cost per operator would favour variants with fewer operators; GFLOP/s counts the
forward-and-backward work (3x the forward's FLOPs, the usual estimate: backward costs two forwards).
Then --steps steps of each run under torch.profiler; its tables give each part's share of the operators'
self CPU time (the parts are chosen by operator name, see PARTS), and the operators that take most.

--isa avx2 re-runs this script with ATEN_CPU_CAPABILITY=avx2 (PyTorch's own kernels) and ONEDNN_MAX_CPU_ISA=AVX2
(oneDNN's convolutions), fp32: the kernels an AVX2-only CPU runs (issue 31 profiles the step there), though not
its cache sizes or clock. Both variables are read when torch loads, hence the re-run.

Variants (a comma list), run alternately so that other load falls on all alike:
  reference   the v3 preset's step as training.train runs it
  mkldnn-off  torch.backends.mkldnn disabled: PyTorch's own convolution kernels instead of oneDNN's
  nchw        contiguous (NCHW) model and batches instead of channels_last
  fused-adam  Adam's fused CPU kernel (fused=True) instead of its per-tensor loop, PyTorch's CPU default
  one-thread  torch.set_num_threads(1) for the step (intra-op threads: oneDNN's and PyTorch's kernels)
  fused-one   fused-adam and one-thread together
"""

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

VARIANTS = {"reference", "mkldnn-off", "nchw", "fused-adam", "one-thread", "fused-one"}  # the docstring's list

# (part, substrings of operator names) after the convolutions (any operator with "conv" in its name, split into
# forward and backward, plain and transposed): first match wins; the rest is "other".
PARTS = [
    ("layout and copies", ("copy_", "contiguous", "clone", "to_dense", "_to_copy", "empty_strided", "as_strided")),
    ("optimizer and clip", ("_foreach", "adam", "norm", "addcdiv", "lerp")),
    ("elementwise and reductions", ("add", "mul", "sub", "div", "relu", "leaky", "sigmoid", "tanh", "abs", "pow",
                                    "sum", "mean", "where", "lt", "clamp", "fill", "zero", "threshold", "cat",
                                    "pad", "reflection", "replication", "upsample", "interpolate", "pixel_shuffle",
                                    "avg_pool", "max_pool")),
]  # fmt: skip


def part_of(name: str) -> str:
    lowered = name.lower()
    if "conv" in lowered:
        kind = "transposed convolution" if "transpose" in lowered else "convolution"
        return f"{kind}, {'backward' if 'backward' in lowered else 'forward'}"
    for part, needles in PARTS:
        if any(needle in lowered for needle in needles):
            return part
    return "other"


def reexec_for_isa(isa: str) -> None:
    """Run this script again with the ISA caps in the environment (read only when torch loads)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": isa, "ONEDNN_MAX_CPU_ISA": isa.upper(), "RELIGHT_PROFILE_ISA": isa}
    raise SystemExit(subprocess.call([sys.executable, __file__, *sys.argv[1:]], env=env))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="square crop side, pixels (a multiple of 16)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--isa", choices=["native", "avx2"], default="native")
    parser.add_argument("--variants", default="reference")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; each runs every variant in turn")
    parser.add_argument("--top", type=int, default=12, help="operators listed per variant (0: no profile)")
    args = parser.parse_args()
    unknown = set(args.variants.split(",")) - VARIANTS
    if unknown:
        parser.error(f"unknown variants {', '.join(sorted(unknown))} (known: {', '.join(sorted(VARIANTS))})")
    if args.isa != "native" and os.environ.get("RELIGHT_PROFILE_ISA") != args.isa:
        reexec_for_isa(args.isa)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from model.allocator import reuse_freed_memory
    from model.info import count_flops
    from model.pixels import parse_value_range
    from model.precision import cpu_kind
    from model.weights import SHIPPED_WEIGHTS, load_weights
    from training.train import PRESETS, TrainingStep, autocast_dtype, build_loss

    sys.path.insert(0, os.path.dirname(__file__))
    from training_step import batch

    reuse_freed_memory()
    cfg = PRESETS["v3"]
    amp = None if args.isa == "avx2" else autocast_dtype(cfg, torch.device("cpu"))  # the preset's amp is auto
    model, _ = load_weights(SHIPPED_WEIGHTS)
    loss_fn = build_loss(cfg, 2, parse_value_range(cfg.value_range), torch.device("cpu"))
    flops = 3 * count_flops(type(model), args.size, args.size) * args.batch
    print(f"# {cpu_kind()}")
    print(f"# ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '-')}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')}; {torch.get_num_threads()} threads; "
          f"autocast {amp or 'off (fp32)'}; {args.size}x{args.size}, batch {args.batch}; "
          f"{flops / 1e12:.3f} TFLOP a step (3x the forward); load average {os.getloadavg()[0]:.1f}")  # fmt: skip

    steps, inputs = {}, {}
    for name in args.variants.split(","):
        layout = torch.contiguous_format if name == "nchw" else torch.channels_last
        net = copy.deepcopy(model).to(memory_format=layout)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=name in ("fused-adam", "fused-one") or None)
        step = TrainingStep(net, optimizer, torch.amp.GradScaler("cpu", enabled=False), amp, cfg.grad_clip, False)
        step.set_loss(loss_fn)
        steps[name] = step
        inputs[name] = tuple(batch(args.size, args.batch, seed).contiguous(memory_format=layout) for seed in (0, 1))

    threads = torch.get_num_threads()

    def run(name: str, count: int) -> None:
        torch.set_num_threads(1 if name in ("one-thread", "fused-one") else threads)
        with torch.backends.mkldnn.flags(enabled=name != "mkldnn-off"):
            for _ in range(count):
                steps[name](*inputs[name])
        torch.set_num_threads(threads)

    for name in steps:
        run(name, args.warmup)
    seconds, tables = defaultdict(list), {}
    for _ in range(args.rounds):
        for name in steps:
            start = time.perf_counter()
            run(name, args.steps)
            seconds[name].append((time.perf_counter() - start) / args.steps)
    for name in steps:
        if args.top:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                run(name, args.steps)
            tables[name] = prof.key_averages()
    first = next(iter(steps))
    reference = statistics.median(seconds[first])
    output, target = inputs[first][0].clone().requires_grad_(), inputs[first][1]
    start = time.perf_counter()
    for _ in range(args.steps):
        loss_fn(output, target).backward()
    loss_s = (time.perf_counter() - start) / args.steps
    print(f"# the loss alone (forward and backward on a fixed output, fp32): {loss_s:.3f} s a step, "
          f"{loss_s / reference:.0%} of the first variant's step")  # fmt: skip
    print("| variant | s/step (median round) | rounds' range | GFLOP/s | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for name in steps:
        step_s = statistics.median(seconds[name])
        print(f"| {name} | {step_s:.2f} | {min(seconds[name]):.2f}-{max(seconds[name]):.2f} | "
              f"{flops / step_s / 1e9:.0f} | {reference / step_s:.2f}x |")  # fmt: skip
    for name, events in tables.items():
        by_part, total = defaultdict(float), 0.0
        for event in events:
            by_part[part_of(event.key)] += event.self_cpu_time_total
            total += event.self_cpu_time_total
        print(f"\n{name}: share of the operators' self CPU time ({total / 1e6 / args.steps:.2f} s a step)")
        print("| part | s/step | share |")
        print("| --- | --- | --- |")
        for part, micros in sorted(by_part.items(), key=lambda item: -item[1]):
            print(f"| {part} | {micros / 1e6 / args.steps:.2f} | {micros / total:.0%} |")
        print(f"\n{name}: top {args.top} operators by self CPU time")
        print("| operator | calls/step | s/step | share |")
        print("| --- | --- | --- | --- |")
        for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
            seconds_per_step = event.self_cpu_time_total / 1e6 / args.steps
            print(f"| {event.key} | {event.count / args.steps:.0f} | {seconds_per_step:.3f} | "
                  f"{event.self_cpu_time_total / total:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
