"""The C heap around the forward pass: glibc's defaults against model.allocator.reuse_freed_memory.

    python bench/allocator.py                       # 1024x1024, eager and compiled
    python bench/allocator.py --size 512 --compile off
    python bench/allocator.py --mixed              # resident memory after a mix of full batches

Each row is a fresh process (mallopt cannot be undone) that builds the service's Engine on the
CPU with the shipped weights, warms the shape up and times passes on the engine's own kind of
thread, a worker, as the batcher runs it. Minor page faults are the process's, per pass. Where
Debian's libtcmalloc-minimal4 is installed, a row with it preloaded shows the library
alternative side by side. --mixed instead runs two rounds of full batches of several shapes
(eager) and reports the resident memory they leave.
"""

import argparse
import concurrent.futures
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
# Full batches under the default 4-megapixel budget: 512, 1024 and tile shapes, and odd sizes.
MIXED_BATCHES = [(4, 1024, 1024), (8, 512, 512), (3, 1088, 1088), (1, 720, 1280), (1, 256, 256), (2, 1088, 1088)]


def child(allocator: str, compile_mode: str, size: int, repeats: int) -> dict:
    import numpy as np

    import service.inference.engine
    from service.settings import Settings

    if allocator != "reuse_freed_memory":
        service.inference.engine.reuse_freed_memory = lambda: False
    if compile_mode == "mixed":
        return mixed_batches(service.inference.engine.Engine(Settings(warmup="", warmup_tile=False, compile="off")))
    settings = Settings(warmup=f"{size}x{size}", warmup_tile=False, compile=compile_mode)
    engine = service.inference.engine.Engine(settings)
    worker = concurrent.futures.ThreadPoolExecutor(1)
    worker.submit(engine.warm_up, settings.warmup_shapes(), lambda height, width: 1).result()
    pixels = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)

    def timed_pass() -> tuple[float, int]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        engine.run(pixels)
        return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

    passes = [worker.submit(timed_pass).result() for _ in range(repeats)]
    return {
        "seconds": statistics.median(seconds for seconds, _ in passes),
        "faults": statistics.median(faults for _, faults in passes),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "compiled": bool(engine.compiled_shapes),
    }


def resident_mb() -> dict:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def mixed_batches(engine) -> dict:
    import numpy as np

    worker = concurrent.futures.ThreadPoolExecutor(1)
    generator = np.random.default_rng(0)
    for _ in range(2):
        for shape in MIXED_BATCHES:
            worker.submit(engine.run, generator.integers(0, 256, (*shape, 3), dtype=np.uint8)).result()
    return resident_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--compile", default="off,on", help="comma-separated RELIGHT_COMPILE values")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mixed", action="store_true", help="resident memory after mixed batches instead")
    parser.add_argument("--child", nargs=2, metavar=("ALLOCATOR", "COMPILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.size, args.repeats)))
        return
    allocators = {"glibc defaults": {}, "reuse_freed_memory": {}}
    if TCMALLOC.exists():
        allocators["tcmalloc (LD_PRELOAD)"] = {"LD_PRELOAD": str(TCMALLOC)}
    if args.mixed:
        batches = ", ".join("x".join(map(str, shape)) for shape in MIXED_BATCHES)
        print(f"# eager, two rounds of {batches} (batch x H x W)")
        print("| allocator | resident after, MB | peak, MB |")
        print("| --- | --- | --- |")
        for name, extra_env in allocators.items():
            row = run_child(name, "mixed", args, extra_env)
            print(f"| {name} | {row['VmRSS']:,.0f} | {row['VmHWM']:,.0f} |", flush=True)
        return
    print(f"# {args.size}x{args.size}, batch 1, median of {args.repeats} passes on a worker thread after warm-up")
    print("| allocator | forward | s/pass | minor faults/pass | peak RSS MB | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for compile_mode in args.compile.split(","):
        baseline = None
        for name, extra_env in allocators.items():
            row = run_child(name, compile_mode, args, extra_env)
            baseline = baseline or row["seconds"]
            forward = "compiled" if row["compiled"] else "eager"
            print(f"| {name} | {forward} | {row['seconds']:.3f} | {row['faults']:,.0f} | "
                  f"{row['peak_rss_mb']:,.0f} | {baseline / row['seconds']:.2f}x |", flush=True)  # fmt: skip


def run_child(name: str, mode: str, args, extra_env: dict) -> dict:
    allocator = "reuse_freed_memory" if name == "reuse_freed_memory" else "glibc"
    command = [sys.executable, __file__, "--size", str(args.size), "--repeats", str(args.repeats)]
    result = subprocess.run(
        [*command, "--child", allocator, mode], env=os.environ | extra_env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
