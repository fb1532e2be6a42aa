"""Soak: a longer mixed run against the real service, counting every answer; lost requests must be 0.

    python bench/soak.py --duration 120 --clients 24

Clients loop over a mix of valid uploads (several sizes and formats) and hostile ones
(empty, text, truncated, bad CRC, decompression-bomb header, wrong field, oversized body)
against a server with a small queue, so overload 503s happen too. A request is lost if it
gets no HTTP answer at all. Prints answers by kind and status, lost requests, and resident
memory before, at the peak and after.
"""

import argparse
import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.weights import SHIPPED_WEIGHTS  # noqa: E402
from tests.images import encode, png_with_bad_crc, png_with_header, scene  # noqa: E402
from tests.server import Server, free_port, wait_until  # noqa: E402

MIX = {
    "png 64": ("image", encode(scene(64, 64))),
    "png 200x120": ("image", encode(scene(120, 200, 1))),
    "jpeg 96": ("image", encode(scene(96, 96, 2), "JPEG", quality=90)),
    "empty": ("image", b""),
    "text": ("image", b"not an image at all" * 20),
    "truncated": ("image", encode(scene(64, 64))[:150]),
    "bad crc": ("image", png_with_bad_crc(scene(32, 32))),
    "bomb header": ("image", png_with_header(100_000, 100_000)),
    "wrong field": ("picture", encode(scene(32, 32))),
    "oversized": ("image", b"\0" * 3_000_000),
}


def resident_bytes(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("process_resident_memory_bytes"):
            return float(line.split()[-1])
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "RELIGHT_WEIGHTS": str(args.weights), "RELIGHT_PORT": str(port), "RELIGHT_MAX_QUEUE": "8",
           "RELIGHT_MAX_UPLOAD_BYTES": "2000000", "RELIGHT_WARMUP": "64x64"}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "service.serve"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    answers: collections.Counter = collections.Counter()
    lost: list[str] = []
    peak = [0.0]
    lock = threading.Lock()
    try:
        wait_until(Server(url, process, Path(os.devnull)), "/readyz")
        idle = resident_bytes(url)
        stop_at = time.monotonic() + args.duration

        def client(i: int) -> None:
            kinds = list(MIX)
            n = i
            with httpx.Client(timeout=120) as session:
                while time.monotonic() < stop_at:
                    kind = kinds[n % len(kinds)]
                    field, data = MIX[kind]
                    n += 1
                    try:
                        status = session.post(url + "/relight", files={field: ("upload.png", data)}).status_code
                    except httpx.TransportError as error:
                        if kind == "oversized":  # answered 413 and closed while we were still sending
                            status = "413 (closed mid-send)"
                        else:
                            with lock:
                                lost.append(f"{kind}: {type(error).__name__}")
                            continue
                    with lock:
                        answers[(kind, status)] += 1

        def watch_memory() -> None:
            while time.monotonic() < stop_at:
                peak[0] = max(peak[0], resident_bytes(url))
                time.sleep(1)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        threads.append(threading.Thread(target=watch_memory))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(2)
        after = resident_bytes(url)
        alive = httpx.get(url + "/healthz").status_code == 200
    finally:
        process.terminate()
        exit_code = process.wait(timeout=120)
    print(f"# {args.clients} clients for {args.duration:g} s, RELIGHT_MAX_QUEUE=8")
    print("| upload | status | answers |")
    print("| --- | --- | --- |")
    for (kind, status), count in sorted(answers.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        print(f"| {kind} | {status} | {count} |")
    print(f"\nrequests answered: {sum(answers.values())}; lost (no HTTP answer): {len(lost)} {lost[:5]}")
    server_errors = sum(c for (_, status), c in answers.items() if str(status).startswith("5") and status != 503)
    print(f"5xx answers other than 503: {server_errors}")
    print(f"resident memory MB: idle {idle / 2**20:.0f}, peak {peak[0] / 2**20:.0f}, after {after / 2**20:.0f}")
    print(f"server alive at the end: {alive}; exit code after SIGTERM: {exit_code}")


if __name__ == "__main__":
    main()
