"""The real service on a GPU under load, against the bare model at the same batch: what HTTP costs around it.

    python bench/gpu_load.py                                  # 1 and 8 workers, PNG and JPEG, 1024x1024
    python bench/gpu_load.py --workers 1,4,8 --duration 20

For each RELIGHT_WORKERS value it starts `relight-serve` (python -m service.serve) with the real weights,
batches of up to 8 images (the pixel budget raised to match) and the 1024x1024 shape warmed, then
loads it with clients spread over several processes (one Python process of client threads binds
before a GPU-fed server does), each uploading the same photographic picture (bench/serving_ceiling.py
`picture`) and asking for its format back. Afterwards it times the model alone in this process at
the mean batch the service formed (bench/load.py `model_throughput`: the engine's own `run`, the same
device and precision, host copies included) and prints the service's images/s as a fraction of it.
"""

import argparse
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import batch_totals, model_throughput  # noqa: E402
from bench.serving_ceiling import drive, picture, tree_cpu_seconds, upload  # noqa: E402
from model.weights import SHIPPED_WEIGHTS  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.server import Server, free_port, wait_until  # noqa: E402

MAX_BATCH = 8


def start(workers: int, size: int, weights: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    budget = max(MAX_BATCH * size * size, Settings.model_fields["max_batch_pixels"].default)
    env = {**os.environ, "RELIGHT_WEIGHTS": str(weights), "RELIGHT_PORT": str(port), "RELIGHT_WORKERS": str(workers),
           "RELIGHT_MAX_BATCH_SIZE": str(MAX_BATCH), "RELIGHT_MAX_BATCH_PIXELS": str(budget),
           "RELIGHT_WARMUP": f"{size}x{size}", "RELIGHT_WARMUP_TILE": "false", "RELIGHT_MAX_QUEUE": "512",
           "RELIGHT_REQUEST_TIMEOUT_S": "120"}  # fmt: skip
    server = subprocess.Popen([sys.executable, "-m", "service.serve"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until(Server(url, server, Path(os.devnull)), "/readyz", timeout=300)
    return server, url


def load(url: str, data: bytes, processes: int, threads: int, duration: float) -> tuple[int, int, float]:
    """(answers 200, other answers, seconds) from `processes` processes of `threads` clients each."""
    with ProcessPoolExecutor(processes) as pool:
        results = list(pool.map(drive, *zip(*[(url, data, threads, duration)] * processes, strict=True)))
    return sum(r[0] for r in results), sum(r[1] for r in results), max(r[2] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,8", help="RELIGHT_WORKERS values")
    parser.add_argument("--formats", default="png,jpeg")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--processes", type=int, default=8, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="clients per process")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row, after 2 s of warm-up load")
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    args = parser.parse_args()
    uploads = {fmt: upload(picture(args.size), fmt) for fmt in args.formats.split(",")}
    clients = args.processes * args.threads
    print(f"# {os.cpu_count()} cores, {clients} clients in {args.processes} processes, {args.duration:g} s per row, "
          f"{args.size}x{args.size}, up to {MAX_BATCH} images a batch, weights {args.weights.name}")  # fmt: skip
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        server, url = start(workers, args.size, args.weights)
        try:
            for fmt, data in uploads.items():
                load(url, data, args.processes, args.threads, 2.0)
                images_before, passes_before = batch_totals(url)
                cpu_before = tree_cpu_seconds(server.pid)
                ok, failed, seconds = load(url, data, args.processes, args.threads, args.duration)
                cpu_ms = (tree_cpu_seconds(server.pid) - cpu_before) * 1000 / max(ok + failed, 1)
                images, passes = batch_totals(url)
                mean_batch = (images - images_before) / max(passes - passes_before, 1)
                rows.append((workers, fmt, ok / seconds, failed, mean_batch, cpu_ms))
                print(f"served: {workers} workers, {fmt}: {ok / seconds:.1f} images/s, {failed} not 200, "
                      f"mean batch {mean_batch:.1f}, {cpu_ms:.1f} ms server CPU/request", flush=True)  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=120)
    bare = {}
    print("| workers | format | images/s | non-200 | mean batch | server CPU ms/request | model images/s | fraction |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for workers, fmt, served, failed, mean_batch, cpu_ms in rows:
        batch = max(1, round(mean_batch))
        if batch not in bare:
            bare[batch] = model_throughput(args.weights, args.size, batch)
        print(f"| {workers} | {fmt} | {served:.1f} | {failed} | {mean_batch:.1f} | {cpu_ms:.1f} | "
              f"{bare[batch]:.1f} (batch {batch}) | {served / bare[batch]:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
