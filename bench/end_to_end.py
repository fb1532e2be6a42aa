"""A 1024x1024 upload answered end to end by the service against the naive forward, in one run.

    python bench/end_to_end.py                 # default settings (compile auto), then RELIGHT_COMPILE=off
    python bench/end_to_end.py --repeats 5 --modes auto

First the naive forward (fp32, NCHW, eager, in this process, glibc's allocator defaults) times
one 1024x1024 image; then `relight-serve` starts with the service's default settings
(the default warm-up shapes and tile, compile as set) on loopback and answers the same
picture as a PNG upload, one request at a time. Prints the time to ready, the median
end-to-end time and its speed-up over the naive forward.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.inference import relight  # noqa: E402
from model.weights import SHIPPED_WEIGHTS, load_weights  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.images import encode, scene  # noqa: E402
from tests.server import running_server, wait_until  # noqa: E402

SIZE = 1024


def naive_seconds(picture, repeats: int) -> float:
    model, metadata = load_weights(SHIPPED_WEIGHTS, torch.device("cpu"))
    pixels = torch.from_numpy(picture[None])
    relight(model, pixels, metadata["value_range"])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        relight(model, pixels, metadata["value_range"])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def served_seconds(upload: bytes, compile_mode: str, repeats: int, log_dir: Path) -> tuple[float, float]:
    """(seconds to /readyz, median seconds per answered upload) with the default settings."""
    defaults = {name: Settings.model_fields[name].default for name in ("warmup", "warmup_tile")}
    started = time.perf_counter()
    with running_server(SHIPPED_WEIGHTS, log_dir, wait_ready=False, compile=compile_mode, **defaults) as server:
        wait_until(server, "/readyz", timeout=1800)
        ready = time.perf_counter() - started
        times = []
        with httpx.Client(timeout=120) as client:
            for _ in range(repeats):
                start = time.perf_counter()
                answer = client.post(server.url + "/relight", files={"image": ("scene.png", upload, "image/png")})
                times.append(time.perf_counter() - start)
                answer.raise_for_status()
    return ready, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="auto,off", help="comma-separated RELIGHT_COMPILE values to serve with")
    args = parser.parse_args()
    picture = scene(SIZE, SIZE)
    naive = naive_seconds(picture, args.repeats)
    print(f"# {SIZE}x{SIZE} PNG upload, median of {args.repeats}, {torch.get_num_threads()} threads")
    print("| forward | ready after | s per image | speed-up over naive |")
    print("| --- | --- | --- | --- |")
    print(f"| naive fp32 NCHW eager, in process | - | {naive:.2f} | 1.00x |", flush=True)
    with tempfile.TemporaryDirectory() as log_dir:
        for mode in args.modes.split(","):
            ready, seconds = served_seconds(encode(picture), mode, args.repeats, Path(log_dir))
            print(f"| service, RELIGHT_COMPILE={mode} | {ready:.1f} s | {seconds:.2f} | {naive / seconds:.2f}x |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
