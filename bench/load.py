"""Load test: the real service under N concurrent clients, batching on and off, against the bare model.

    python bench/load.py                                  # sizes 256,1024; 8 clients; 30 s each
    python bench/load.py --sizes 512 --clients 16 --duration 60

For each RELIGHT_MAX_BATCH_SIZE (8 = batching on, 1 = off) it starts `relight-serve` on a
loopback port, has the clients upload real PNGs of each size for a fixed time, and prints
throughput and p50/p95/p99 of the successful answers. It then times the model in this
process (no server running) at the same batch size and image size, with the same device
and precision the service picks, and prints the service's throughput as a fraction of it:
what HTTP, decoding, queueing and encoding cost around the model.
"""

import argparse
import io
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.weights import SHIPPED_WEIGHTS  # noqa: E402
from service.inference.engine import Engine  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.images import scene  # noqa: E402
from tests.server import Server, free_port, wait_until  # noqa: E402


def png(size: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(scene(size, size, seed)).save(buffer, "PNG")
    return buffer.getvalue()


def drive(url: str, size: int, clients: int, duration: float) -> dict:
    uploads = [png(size, seed) for seed in range(clients)]
    latencies, statuses, lock = [], [], threading.Lock()
    stop_at = time.monotonic() + duration

    def client(i: int) -> None:
        with httpx.Client(timeout=600) as session:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = session.post(url + "/relight", files={"image": ("scene.png", uploads[i])})
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {
        "ok": len(latencies), "errors": len(statuses) - len(latencies), "images_per_s": len(latencies) / elapsed,
        "p50": quantiles[49], "p95": quantiles[94], "p99": quantiles[98],
    }  # fmt: skip


def batch_totals(url: str) -> tuple[float, float]:
    """(images, forward passes) so far, from the service's relight_batch_size histogram."""
    lines = httpx.get(url + "/metrics").text.splitlines()
    images = sum(float(x.split()[-1]) for x in lines if x.startswith("relight_batch_size_sum"))
    passes = sum(float(x.split()[-1]) for x in lines if x.startswith("relight_batch_size_count"))
    return images, passes


def model_throughput(weights: Path, size: int, batch: int, repeats: int = 3) -> float:
    engine = Engine(Settings(weights=weights))
    pixels = np.stack([scene(size, size, seed) for seed in range(batch)])
    engine.run(pixels)
    engine.run(pixels)
    seconds = statistics.median(engine.run(pixels).inference_s for _ in range(repeats))
    return batch / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per size")
    parser.add_argument("--batch-sizes", default="8,1", help="RELIGHT_MAX_BATCH_SIZE values to compare")
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for max_batch in (int(b) for b in args.batch_sizes.split(",")):
        port = free_port()
        env = {**os.environ, "RELIGHT_WEIGHTS": str(args.weights), "RELIGHT_PORT": str(port),
               "RELIGHT_MAX_BATCH_SIZE": str(max_batch), "RELIGHT_MAX_QUEUE": "1024", "RELIGHT_MAX_WAIT_MS": "10",
               "RELIGHT_REQUEST_TIMEOUT_S": "600", "RELIGHT_WARMUP": ",".join(f"{s}x{s}" for s in sizes)}  # fmt: skip
        server = subprocess.Popen([sys.executable, "-m", "service.serve"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(Server(url, server, Path(os.devnull)), "/readyz", timeout=900)
            for size in sizes:
                images_before, passes_before = batch_totals(url)
                result = drive(url, size, args.clients, args.duration)
                images, passes = batch_totals(url)
                result["mean_batch"] = (images - images_before) / max(passes - passes_before, 1)
                rows.append((max_batch, size, result))
                print(f"served max_batch={max_batch} size={size}: {result}", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=120)
    print(f"\n# {args.clients} clients, {args.duration:g} s per row, weights {args.weights.name}")
    print("| max batch | size | mean batch | images/s | p50 s | p95 s | p99 s | non-200 | model images/s | fraction |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for max_batch, size, result in rows:
        batch = max(1, round(result["mean_batch"]))
        bare = model_throughput(args.weights, size, batch)
        print(f"| {max_batch} | {size} | {result['mean_batch']:.1f} | {result['images_per_s']:.2f} | "
              f"{result['p50']:.3f} | {result['p95']:.3f} | {result['p99']:.3f} | {result['errors']} | "
              f"{bare:.2f} (batch {batch}) | {result['images_per_s'] / bare:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
