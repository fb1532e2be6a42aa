"""`relight`: relight photos on this machine with the local model, or through a running service.

    relight IN_DIR OUT_DIR                          # every image in a folder, names and formats kept
    relight photo.jpg -o relit.jpg                  # one file (the format follows -o's suffix)
    relight IN_DIR OUT_DIR --server http://host:8000 --jobs 4

Locally it runs the service's own code: the same decoding (colour profile and metadata
kept), the engine (its device and fast precision, RELIGHT_* settings), images of one size
batched, big images in tiles. Outputs that already exist are skipped, so a rerun resumes.
A file that cannot be read is reported by name and the others are still done; the exit
status is 1 if any file failed. --server sends the files to a running service instead,
several at once, retrying a 503 after its Retry-After.
"""

import argparse
import itertools
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from tqdm import tqdm

from model.tiling import relight_tiled
from service.batcher import Tiling
from service.codecs.formats import SUFFIX_FORMATS, answer_suffix, same_format
from service.codecs.imaging import DecodedImage, ImageError, decode, encode
from service.engine import Engine
from service.settings import Settings

IMAGE_SUFFIXES = {suffix for suffix, name in Image.registered_extensions().items() if name in Image.OPEN}
MAX_RETRIES = 20


@dataclass
class Task:
    source: Path
    target: Path  # for a folder: the same name, with the answer format's suffix where the format cannot be kept
    image_format: str | None = None  # None: the upload's own (service.codecs.formats.same_format)


def folder_tasks(in_dir: Path, out_dir: Path) -> list[Task]:
    tasks = []
    for source in sorted(in_dir.iterdir()):
        if source.is_file() and not source.name.startswith(".") and source.suffix.lower() in IMAGE_SUFFIXES:
            tasks.append(Task(source, out_dir / (source.stem + answer_suffix(source.suffix))))
    return tasks


def file_task(source: Path, output: Path | None) -> Task:
    if output is None:
        output = source.with_name(f"{source.stem}-relit{answer_suffix(source.suffix)}")
    return Task(source, output, SUFFIX_FORMATS.get(output.suffix.lower()))


def write(task: Task, data: bytes) -> None:
    """Written beside and renamed into place: an interrupted run never leaves half a file to be skipped."""
    task.target.parent.mkdir(parents=True, exist_ok=True)
    partial = task.target.with_name(task.target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(task.target)


class Failures:
    def __init__(self, bar: tqdm):
        self.bar, self.names = bar, []

    def report(self, task: Task, reason: str) -> None:
        self.names.append(task.source.name)
        self.bar.write(f"relight: {task.source}: {reason}", file=sys.stderr)


def relight_locally(tasks: list[Task], bar: tqdm, failures: Failures) -> None:
    settings = Settings()
    engine = Engine(settings)
    tiling = Tiling(settings.tile_size, settings.tile_overlap, settings.max_batch_size, settings.max_batch_pixels)

    def run(batch: np.ndarray) -> np.ndarray:
        return engine.run(batch).images

    for group in same_size_groups(tasks, settings.max_pixels, tiling, failures, bar):
        height, width = group[0][1].rgb.shape[:2]
        if max(height, width) > tiling.tile:
            limit = tiling.batch_limit(min(height, tiling.tile), min(width, tiling.tile))
            outputs = [relight_tiled(run, d.rgb, tiling.tile, tiling.overlap, limit) for _, d in group]
        else:
            outputs = list(run(np.stack([decoded.rgb for _, decoded in group])))
        for (task, decoded), output in zip(group, outputs, strict=True):
            image_format = task.image_format or same_format(decoded.source_format)
            write(task, encode(output, decoded.alpha, image_format, decoded.metadata))
            bar.update()


def same_size_groups(
    tasks: list[Task], max_pixels: int, tiling: Tiling, failures: Failures, bar: tqdm
) -> Iterator[list[tuple[Task, DecodedImage]]]:
    """Decoded images in batches of one size, as many as a forward pass takes; unreadable files reported."""
    sizes = {}
    for task in tasks:
        try:
            with Image.open(task.source) as image:
                sizes[task.source] = image.size
        except (OSError, ValueError, SyntaxError) as error:
            failures.report(task, f"cannot be read as an image ({error})")
            bar.update()
    readable = sorted((t for t in tasks if t.source in sizes), key=lambda t: (sizes[t.source], t.source.name))
    for size, same in itertools.groupby(readable, key=lambda t: sizes[t.source]):
        limit = tiling.batch_limit(size[1], size[0])
        same = list(same)
        for first in range(0, len(same), limit):
            group = []
            for task in same[first : first + limit]:
                try:
                    group.append((task, decode(task.source.read_bytes(), max_pixels)))
                except (ImageError, OSError) as error:
                    failures.report(task, getattr(error, "detail", str(error)))
                    bar.update()
            # EXIF orientation can turn an image: keep each batch to one decoded shape.
            shape = lambda item: item[1].rgb.shape  # noqa: E731
            for _, shaped in itertools.groupby(sorted(group, key=shape), key=shape):
                yield list(shaped)


def relight_on_server(tasks: list[Task], url: str, jobs: int, api_key: str | None, bar: tqdm, failures: Failures):
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(600, connect=10)) as client:

        def send(task: Task) -> None:
            params = {"format": task.image_format} if task.image_format else {}
            for _ in range(MAX_RETRIES):
                try:
                    response = client.post("/relight", files={"image": (task.source.name, task.source.read_bytes())},
                                           params=params)  # fmt: skip
                except (httpx.HTTPError, OSError) as error:
                    failures.report(task, f"{type(error).__name__}: {error}")
                    break
                if response.status_code == 503:
                    time.sleep(float(response.headers.get("retry-after", 1)))
                    continue
                if response.status_code == 200:
                    write(task, response.content)
                else:
                    try:
                        detail = response.json()["detail"]
                    except ValueError:
                        detail = response.text[:200]
                    failures.report(task, f"{response.status_code}: {detail}")
                break
            else:
                failures.report(task, f"still 503 after {MAX_RETRIES} tries")
            bar.update()

        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(send, tasks))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="relight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="an image, or a folder of images")
    parser.add_argument("out_dir", type=Path, nargs="?", help="where a folder's relit images go")
    parser.add_argument("-o", "--output", type=Path, help="the relit file, for one image (default NAME-relit.EXT)")
    parser.add_argument("--server", help="URL of a running relight service to send the images to")
    parser.add_argument("--jobs", type=int, default=4, help="uploads in flight at once with --server")
    parser.add_argument("--api-key", default=os.environ.get("RELIGHT_API_KEY"), help="for --server")
    args = parser.parse_args(argv)
    if args.source.is_dir():
        if args.out_dir is None:
            parser.error("a folder needs OUT_DIR: relight IN_DIR OUT_DIR")
        tasks = folder_tasks(args.source, args.out_dir)
    elif args.source.is_file():
        tasks = [file_task(args.source, args.output or args.out_dir)]
    else:
        parser.error(f"{args.source}: no such file or folder")
    todo = [task for task in tasks if not task.target.exists()]
    with tqdm(total=len(todo), unit="image", desc="relighting", dynamic_ncols=True) as bar:
        if len(todo) < len(tasks):
            bar.write(f"relight: skipping {len(tasks) - len(todo)} images already relit in the output", file=sys.stderr)
        failures = Failures(bar)
        if args.server:
            relight_on_server(todo, args.server.rstrip("/"), args.jobs, args.api_key, bar, failures)
        elif todo:
            relight_locally(todo, bar, failures)
    if failures.names:
        sys.exit(f"relight: {len(failures.names)} of {len(todo)} images failed: {', '.join(failures.names)}")


if __name__ == "__main__":
    main()
