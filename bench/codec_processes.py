"""The service's decode and encode in threads (as served) against a pool of processes, 1 and 2 cores.

    python bench/codec_processes.py                 # 1024x1024 PNG in and out
    python bench/codec_processes.py --format jpeg

fpng keeps the GIL while it encodes, so threads do not spread a PNG answer over the cores;
a process pool would, at the price of moving the pixels between processes. Each row runs
in a fresh process pinned with taskset: four client threads each decode an upload and
encode the pixels back (through `service.codecs.imaging`, as the service does), for a few seconds.
Columns: images per second, and the main process's CPU milliseconds per image (all its
threads: what stays on the side of the GIL that also runs the event loop).
"""

import argparse
import subprocess
import sys
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context, shared_memory
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving_ceiling import picture, upload  # noqa: E402
from service.codecs.imaging import Metadata, decode, encode  # noqa: E402

MODES = {
    "threads": "threads (the service)",
    "pickled": "process pool, pixels pickled",
    "shared": "process pool, pixels in shared memory",
}


def decode_pickled(data: bytes) -> tuple[np.ndarray, Metadata]:
    decoded = decode(data, 1 << 30)
    return decoded.rgb, decoded.metadata


def encode_pickled(pixels: np.ndarray, metadata: Metadata, image_format: str) -> bytes:
    return encode(pixels, None, image_format, metadata)


def decode_shared(data: bytes) -> tuple[str, tuple, Metadata]:
    decoded = decode(data, 1 << 30)
    block = shared_memory.SharedMemory(create=True, size=decoded.rgb.nbytes)
    np.ndarray(decoded.rgb.shape, np.uint8, block.buf)[:] = decoded.rgb
    block.close()
    return block.name, decoded.rgb.shape, decoded.metadata


def encode_shared(name: str, shape: tuple, metadata: Metadata, image_format: str) -> bytes:
    block = shared_memory.SharedMemory(name=name)
    try:
        return encode(np.ndarray(shape, np.uint8, block.buf), None, image_format, metadata)
    finally:
        block.close()


def round_trip(pool: Executor, mode: str, data: bytes, image_format: str) -> bytes:
    """Decode, hand the pixels on (the model's answer is a new array in this process), encode."""
    if mode != "shared":
        pixels, metadata = pool.submit(decode_pickled, data).result()
        return pool.submit(encode_pickled, pixels.copy(), metadata, image_format).result()
    name, shape, metadata = pool.submit(decode_shared, data).result()
    decoded = shared_memory.SharedMemory(name=name)
    answer = shared_memory.SharedMemory(create=True, size=decoded.size)
    try:
        np.ndarray(shape, np.uint8, answer.buf)[:] = np.ndarray(shape, np.uint8, decoded.buf)
        return pool.submit(encode_shared, answer.name, shape, metadata, image_format).result()
    finally:
        for block in (decoded, answer):
            block.close()
            block.unlink()


def measure(mode: str, cores: int, image_format: str, seconds: float, clients: int = 4) -> None:
    data = upload(picture(1024), image_format)
    if mode == "threads":
        pool = ThreadPoolExecutor(clients)
    else:
        pool = ProcessPoolExecutor(cores, mp_context=get_context("forkserver"))
    for _ in range(2 * clients):
        round_trip(pool, mode, data, image_format)
    done, stop = [0] * clients, time.monotonic() + seconds

    def client(index: int) -> None:
        while time.monotonic() < stop:
            round_trip(pool, mode, data, image_format)
            done[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    cpu, started = time.process_time(), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, images = time.monotonic() - started, sum(done)
    print(f"{images / elapsed:.1f} {1000 * (time.process_time() - cpu) / images:.2f}")
    pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["png", "jpeg"], default="png")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--row", nargs=2, metavar=("MODE", "CORES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        return measure(args.row[0], int(args.row[1]), args.format, args.seconds)
    print(f"# 1024x1024 {args.format} in and out, 4 client threads, {args.seconds:g} s per row")
    print("| codecs in | images/s, 1 core | images/s, 2 cores | 2 cores / 1 | main process CPU ms/image, 2 cores |")
    print("| --- | --- | --- | --- | --- |")
    for mode, name in MODES.items():
        rows = {}
        for cores in (1, 2):
            command = ["taskset", "-c", ",".join(str(c) for c in range(cores)), sys.executable, __file__,
                       "--format", args.format, "--seconds", str(args.seconds), "--row", mode, str(cores)]  # fmt: skip
            rows[cores] = [float(x) for x in subprocess.run(command, check=True, capture_output=True, text=True,
                                                            cwd=ROOT).stdout.split()]  # fmt: skip
        print(
            f"| {name} | {rows[1][0]:.1f} | {rows[2][0]:.1f} | {rows[2][0] / rows[1][0]:.2f}x | {rows[2][1]:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
