"""Training steps per second: today's eager step against the compiled one, or crop sizes and batches against
each other, side by side in one run.

    python bench/training_step.py                                    # 512x512, batch 2, eager against compiled
    nice -n 10 python bench/training_step.py --size 128 --steps 2   # where a step is slow (AVX2-only CPUs)
    python bench/training_step.py --candidates 256x2,256x4,384x2,512x2   # crop x batch, eager: which trains fastest

A candidate's figure of merit is training pixels per second (crop^2 x batch x steps/s): a step on more pixels
sees more of the scenes, and the v3 preset's crops keep the renders' scale, so pixels are comparable across crops.

Both variants run training.train's own TrainingStep on a Stacked DMSHN with the shipped weights:
the v2 preset's loss (L1 - 0.05 SSIM + 2e-8 TV), Adam, gradient-norm clip 1.0, channels_last,
autocast where model.precision says it is fast (bf16 on AVX512-BF16/AMX CPUs, fp32 elsewhere), and
glibc's freed memory kept for the next step (model.allocator, as training.train and the engine set it).
"compiled" also runs the forward pass and the loss through torch.compile (Inductor), which compiles
their backward too; `--compile auto` in training.train picks it where it wins.

Each variant first runs --warmup steps untimed (compilation, oneDNN kernel builds), then the rounds
alternate variants, --steps steps each, so that other processes' load falls on both alike;
steps/s is the median round's. The first-step losses of both variants, from identical weights on
an identical batch, show that they compute the same thing. Load averages before and after are
printed: on a shared machine, read the ratio, not the absolute rates.
"""

import argparse
import copy
import dataclasses
import os
import statistics
import time

import torch
import torch.nn.functional as F

from model.allocator import reuse_freed_memory
from model.pixels import parse_value_range
from model.precision import cpu_kind
from model.weights import SHIPPED_WEIGHTS, load_weights
from training.train import PRESETS, TrainingStep, autocast_dtype, build_loss


def batch(size: int, batch_size: int, seed: int) -> torch.Tensor:
    """A smooth random batch in [-0.5, 0.5], (N, 3, size, size) channels_last: speed does not depend on content."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch_size, 3, max(1, size // 16), max(1, size // 16), generator=generator) - 0.5
    return F.interpolate(coarse, size=(size, size), mode="bilinear").contiguous(memory_format=torch.channels_last)


def variant(name: str, compiled: bool, amp: torch.dtype | None, model: torch.nn.Module, preset: str = "v2"):
    """(name, TrainingStep) on a copy of `model` with `preset`'s loss at stage 2, Adam and gradient clip."""
    cfg = PRESETS[preset]
    model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    step = TrainingStep(model, optimizer, scaler, amp, cfg.grad_clip, compiled)
    step.set_loss(build_loss(cfg, 2, parse_value_range(cfg.value_range), torch.device("cpu")))
    return name, step


def timed(variants: dict, inputs: dict, args) -> tuple[dict, dict, dict]:
    """Warm each variant up, then alternate them round by round: (steps/s per round, first loss, warm-up s)."""
    first_loss, warmup_s = {}, {}
    for name, step in variants.items():
        start = time.perf_counter()
        for _ in range(args.warmup):
            loss = step(*inputs[name]).item()
            first_loss.setdefault(name, loss)
        warmup_s[name] = time.perf_counter() - start
    rates = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(*inputs[name])
            rates[name].append(args.steps / (time.perf_counter() - start))
    return rates, first_loss, warmup_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="square image side (a multiple of 16)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--candidates", default=None, help="SIDExBATCH,...: eager steps of these shapes instead")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before the rounds")
    parser.add_argument("--amp", choices=["auto", "off", "bf16"], default="auto", help="as training.train's --amp")
    args = parser.parse_args()
    allocator = reuse_freed_memory()
    amp = autocast_dtype(dataclasses.replace(PRESETS["v2"], amp=args.amp), torch.device("cpu"))
    model, _ = load_weights(SHIPPED_WEIGHTS)
    print(f"# {cpu_kind()}")
    print(f"# {torch.get_num_threads()} threads, autocast {amp or 'off (fp32)'}, "
          f"channels_last, allocator reuse_freed_memory: {allocator}")  # fmt: skip
    if args.candidates:
        shapes = [tuple(int(n) for n in text.split("x")) for text in args.candidates.split(",")]
        inputs = {f"{side}x{side}, batch {n}": (batch(side, n, 0), batch(side, n, 1)) for side, n in shapes}
        variants = dict(variant(name, False, amp, model, "v3") for name in inputs)
        print(f"# eager, the v3 preset's loss: warm-up {args.warmup}, {args.rounds} rounds of {args.steps} steps "
              f"per candidate; load average before: {os.getloadavg()[0]:.1f}")  # fmt: skip
    else:
        x, y = batch(args.size, args.batch, 0), batch(args.size, args.batch, 1)
        variants = dict([variant("eager (today)", False, amp, model), variant("compiled", True, amp, model)])
        inputs = dict.fromkeys(variants, (x, y))
        print(f"# {args.size}x{args.size}, batch {args.batch}: warm-up {args.warmup}, {args.rounds} rounds of "
              f"{args.steps} steps per variant; load average before: {os.getloadavg()[0]:.1f}")  # fmt: skip
    rates, first_loss, warmup_s = timed(variants, inputs, args)
    print(f"# load average after: {os.getloadavg()[0]:.1f}")
    print("| variant | steps/s | rounds' range | s/step | Mpixel/s | speed-up | warm-up s | first-step loss |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    pixel_rates = {name: statistics.median(rates[name]) * inputs[name][0][:, 0].numel() for name in variants}
    reference = next(iter(pixel_rates.values()))
    for name in variants:
        rate = statistics.median(rates[name])
        print(f"| {name} | {rate:.3f} | {min(rates[name]):.3f}-{max(rates[name]):.3f} | {1 / rate:.2f} | "
              f"{pixel_rates[name] / 1e6:.3f} | {pixel_rates[name] / reference:.2f}x | {warmup_s[name]:.0f} | "
              f"{first_loss.get(name, float('nan')):.6f} |")  # fmt: skip


if __name__ == "__main__":
    main()
