"""The service's own CPU work per image, with a zero-cost model: what would bind at GPU speed.

    python bench/serving_ceiling.py                                  # PNG, JPEG, WebP at 256/1024/2048, 1 and 2 cores
    python bench/serving_ceiling.py --formats png --sizes 1024 --cores 2 --litserve
    python bench/serving_ceiling.py --formats png,jpeg --sizes 1024 --workers 1,2   # RELIGHT_WORKERS

The real service (`service.serve.main`) runs with an engine whose forward pass returns its
input, pinned with taskset to 1 or 2 cores; clients upload a photographic picture (a
synthetic scene with sensor noise) and ask for the same format back. For each row: requests
per second and the server's CPU milliseconds per request (user + system time of the
server's process tree, from /proc; "cores busy" is their product: how much of the cores
the server used). --litserve adds LitServe doing the same job (Pillow
decode, identity, PNG at level 1; bench/litserve_identity.py) on the same cores, in the
same run. The load comes from wrk pinned to the last core where Debian's `wrk` is installed
(with the server on one core, the generator has the other to itself), else from Python
threads (`--generator httpx`), which need most of a core at these rates.
"""

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.codecs.imaging import decode  # noqa: E402
from tests.server import Server, free_port, wait_until  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def zero_cost_engine(settings):
    """The real Engine (weights loaded, settings honoured) whose forward pass costs nothing."""
    from service.batching.batcher import BatchResult
    from service.inference.engine import Engine

    class ZeroCostEngine(Engine):
        def run(self, pixels: np.ndarray) -> BatchResult:
            return BatchResult(pixels, 0.0)

    return ZeroCostEngine(settings)


def picture(size: int) -> np.ndarray:
    from training.synth.layout import scene_rng
    from training.synth.raycast import LIGHTS, raycast_pair

    source, _ = raycast_pair(scene_rng(1, "validation", 0), 512, LIGHTS["2"], supersample=1, version="2")
    pixels = np.asarray(Image.fromarray(source).resize((size, size), Image.Resampling.BICUBIC)).astype(np.int16)
    noise = np.random.default_rng(0).normal(0, 3, pixels.shape)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def upload(pixels: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    options = {"png": {"compress_level": 6}, "jpeg": {"quality": 90}, "webp": {"quality": 90}}[image_format]
    Image.fromarray(pixels).save(buffer, image_format.upper(), **options)
    return buffer.getvalue()


def codec_table(pictures: dict[int, np.ndarray], repeats: int = 5) -> None:
    """Each candidate codec on the same pictures, side by side: median milliseconds and bytes."""
    import statistics

    import fpng

    def pillow(image_format: str, **options):
        def encode(pixels: np.ndarray) -> bytes:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, image_format, **options)
            return buffer.getvalue()

        return encode

    def pillow_decode(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)))

    def service_decode(data: bytes) -> np.ndarray:
        return decode(data, 1 << 30).rgb

    encoders = {"PNG Pillow level 1": pillow("PNG", compress_level=1), "PNG fpng": fpng.from_ndarray,
                "JPEG Pillow q90": pillow("JPEG", quality=90), "WebP Pillow q90 method 0": pillow("WEBP", quality=90,
                                                                                                method=0)}  # fmt: skip
    print("| codec | size | encode ms | decode ms (Pillow) | decode ms (service) | bytes | lossless |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size, pixels in pictures.items():
        for name, encode in encoders.items():
            timings = []
            for _ in range(repeats):
                started = time.perf_counter()
                data = encode(pixels)
                timings.append(time.perf_counter() - started)
            decode_ms = {}
            for decoder in (pillow_decode, service_decode):
                decode_timings = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    decoded = decoder(data)
                    decode_timings.append(time.perf_counter() - started)
                decode_ms[decoder] = statistics.median(decode_timings) * 1000
            lossless = "yes" if np.array_equal(decoded, pixels) else "no"
            print(f"| {name} | {size} | {statistics.median(timings) * 1000:.1f} | {decode_ms[pillow_decode]:.1f} | "
                  f"{decode_ms[service_decode]:.1f} | {len(data):,} | {lossless} |")  # fmt: skip


def tree_cpu_seconds(root: int) -> float:
    """User + system seconds of `root` and every process below it (threads included)."""
    parents, times = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return sum(times.get(pid, 0.0) for pid in tree)


def drive(url: str, data: bytes, clients: int, duration: float) -> tuple[int, int, float]:
    """(answers 200, other answers, seconds) for `clients` loops uploading `data`."""
    counts, lock = [0, 0], threading.Lock()
    stop_at = time.monotonic() + duration

    def client() -> None:
        with httpx.Client(timeout=120) as session:
            while time.monotonic() < stop_at:
                status = session.post(url + "/relight", files={"image": ("picture", data)}).status_code
                with lock:
                    counts[status != 200] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts[0], counts[1], time.monotonic() - started


WRK_SCRIPT = """
local file = io.open(os.getenv("RELIGHT_BENCH_BODY"), "rb")
wrk.body = file:read("*all")
file:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=relight-bench"
"""


def drive_wrk(url: str, data: bytes, clients: int, duration: float) -> tuple[int, int, float]:
    """The same as `drive`, from wrk (C, one thread) pinned to the last core: a load generator that
    needs a few percent of a core where the Python one needs most of one."""
    head = b'--relight-bench\r\nContent-Disposition: form-data; name="image"; filename="picture"\r\n\r\n'
    with tempfile.TemporaryDirectory() as folder:
        body, script = Path(folder) / "body", Path(folder) / "upload.lua"
        body.write_bytes(head + data + b"\r\n--relight-bench--\r\n")
        script.write_text(WRK_SCRIPT)
        last_core = str(os.cpu_count() - 1)
        command = ["taskset", "-c", last_core, "wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--timeout", "120s",
                   "-s", str(script), url + "/relight"]  # fmt: skip
        report = subprocess.run(
            command, env={**os.environ, "RELIGHT_BENCH_BODY": str(body)}, capture_output=True, text=True, check=True
        ).stdout
    answered = re.search(r"(\d+) requests in ([\d.]+)(m?s)", report)
    count, seconds = int(answered[1]), float(answered[2]) / (1000 if answered[3] == "ms" else 1)
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    failed = int(refused[1]) if refused else 0
    return count - failed, failed, seconds


def start(kind: str, cores: int, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "RELIGHT_PORT": str(port), "RELIGHT_WARMUP": "", "RELIGHT_WARMUP_TILE": "false",
           "RELIGHT_MAX_QUEUE": "256", "RELIGHT_WORKERS": str(workers), "PYTHONPATH": str(ROOT)}  # fmt: skip
    cpus = ",".join(str(c) for c in range(cores))
    script = [str(ROOT / "bench" / "litserve_identity.py")] if kind == "litserve" else [__file__, f"--serve-{kind}"]
    command = ["taskset", "-c", cpus, sys.executable, *script, str(port)]
    server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until(Server(url, server, Path(os.devnull)), "/health" if kind == "litserve" else "/readyz", timeout=300)
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="png,jpeg,webp")
    parser.add_argument("--sizes", default="256,1024,2048")
    parser.add_argument("--cores", default="1,2")
    parser.add_argument("--workers", default="1", help="RELIGHT_WORKERS values to run the service with")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row")
    parser.add_argument("--litserve", action="store_true", help="add LitServe rows (PNG in, PNG level 1 out)")
    parser.add_argument("--codecs", action="store_true", help="first, each candidate codec alone on one core")
    parser.add_argument(
        "--generator", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator: wrk (Debian's wrk package; default where installed) or Python httpx threads",
    )  # fmt: skip
    parser.add_argument("--plain", action="store_true", help="add rows of the service on h11 and asyncio's loop")
    parser.add_argument("--serve-zero", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-plain", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_plain:
        # What uvicorn falls back to without its C extras: the pure-Python HTTP parser and asyncio's loop.
        sys.modules["uvloop"] = sys.modules["httptools"] = None
        args.serve_zero = args.serve_plain
    if args.serve_zero:
        from service.serve import main as serve

        return serve(["--port", str(args.serve_zero)], engine_factory=zero_cost_engine)
    pictures = {size: picture(size) for size in (int(s) for s in args.sizes.split(","))}
    if args.codecs:
        codec_table(pictures)
    kinds = [("zero", int(workers)) for workers in args.workers.split(",")]
    kinds += ([("plain", 1)] if args.plain else []) + ([("litserve", 1)] if args.litserve else [])
    load = drive_wrk if args.generator == "wrk" else drive
    print(f"# {os.cpu_count()}-core machine, {args.clients} clients ({args.generator}), {args.duration:g} s per row, "
          "zero-cost model")  # fmt: skip
    print("| server | cores | format | size | requests/s | server CPU ms/request | cores busy | non-200 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, workers in kinds:
        for cores in (int(c) for c in args.cores.split(",")):
            server, url = start(kind, cores, workers)
            try:
                for image_format in ["png"] if kind == "litserve" else args.formats.split(","):
                    for size, pixels in pictures.items():
                        data = upload(pixels, image_format)
                        load(url, data, args.clients, 1.0)
                        cpu_before = tree_cpu_seconds(server.pid)
                        ok, failed, seconds = load(url, data, args.clients, args.duration)
                        cpu_ms = (tree_cpu_seconds(server.pid) - cpu_before) * 1000 / max(ok + failed, 1)
                        name = {"zero": "relight", "plain": "relight, h11 + asyncio", "litserve": "LitServe"}[kind]
                        name += f", {workers} workers" if workers > 1 else ""
                        busy = (ok + failed) / seconds * cpu_ms / 1000
                        print(f"| {name} | {cores} | {image_format} | {size} | {ok / seconds:.1f} | {cpu_ms:.1f} | "
                              f"{busy:.2f} | {failed} |", flush=True)  # fmt: skip
            finally:
                server.terminate()
                server.wait(timeout=60)


if __name__ == "__main__":
    main()
