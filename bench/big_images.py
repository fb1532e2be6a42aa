"""Big images against the real service at full scale: six 4096x4096 uploads at once, then a small one.

    python bench/big_images.py                                 # the service's default settings
    python bench/big_images.py --big 6 --side 4096 --small-after 3

Starts `relight-serve` with the shipped weights and default settings (warm-up included),
sends `--big` uploads of side x side at once and, `--small-after` seconds later, one
256x256 upload. Prints each answer's status, latency and Retry-After, the resident memory
of the server above idle at its peak (sampled from /proc every 50 ms), and the tiles run
and dropped and the admissions refused, from /metrics.
"""

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.weights import SHIPPED_WEIGHTS  # noqa: E402
from tests.images import encode, scene  # noqa: E402
from tests.server import running_server  # noqa: E402


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=6)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--small-after", type=float, default=3.0)
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    args = parser.parse_args()
    big = encode(scene(args.side, args.side))
    small = encode(scene(256, 256, 1))
    with (
        tempfile.TemporaryDirectory() as logs,
        running_server(args.weights, Path(logs), warmup="512x512,1024x1024", warmup_tile=True) as server,
    ):
        idle = rss_bytes(server.process.pid)
        peak, sampling = idle, True

        def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss_bytes(server.process.pid))
                time.sleep(0.05)

        def upload(name: str, data: bytes, delay: float) -> tuple[str, float, httpx.Response]:
            time.sleep(delay)
            started = time.perf_counter()
            response = httpx.post(server.url + "/relight", files={"image": ("x.png", data)}, timeout=600)
            return name, time.perf_counter() - started, response

        sampler = threading.Thread(target=sample)
        sampler.start()
        jobs = [(f"{args.side}x{args.side} #{i + 1}", big, 0.0) for i in range(args.big)]
        jobs.append(("256x256", small, args.small_after))
        with ThreadPoolExecutor(len(jobs)) as pool:
            results = list(pool.map(lambda job: upload(*job), jobs))
        sampling = False
        sampler.join()
        print(f"# {args.big} x {args.side}x{args.side} at once, 256x256 after {args.small_after:g} s; default settings")
        print(f"# seconds per megapixel (admission's estimate): {server.metric('relight_seconds_per_megapixel'):.2f}")
        print("| upload | status | seconds | Retry-After | tiles |")
        print("| --- | --- | --- | --- | --- |")
        for name, seconds, response in results:
            retry = response.headers.get("retry-after", "")
            print(
                f"| {name} | {response.status_code} | {seconds:.1f} | {retry} | {response.headers.get('x-tiles', '')} |"
            )
        print(f"\nresident memory: idle {idle / 2**30:.2f} GiB, peak {peak / 2**30:.2f} GiB, "
              f"+{(peak - idle) / 2**30:.2f} GiB above idle")  # fmt: skip
        for line in ('relight_tiles_total{outcome="run"}', 'relight_tiles_total{outcome="dropped"}',
                     'relight_admissions_refused_total{reason="backlog"}',
                     'relight_admissions_refused_total{reason="too_big"}'):  # fmt: skip
            print(f"{line} {server.metric(line):g}")


if __name__ == "__main__":
    main()
