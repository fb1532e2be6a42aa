"""`relight`: relight photos on this machine with the local model, or through a running service.

    relight IN_DIR OUT_DIR                          # every image in a folder, names and formats kept
    relight photo.jpg -o relit.jpg                  # one file (the format follows -o's suffix)
    relight IN_DIR OUT_DIR --server http://host:8000 --jobs 4
    relight s3://bucket/photos s3://bucket/relit --ray [ADDRESS]   # on a Ray cluster (the `ray` extra)

Locally it runs the service's own code: the same decoding (colour profile and metadata
kept), the engine (its device and fast precision, RELIGHT_* settings), images of one size
batched, big images in tiles. Outputs that already exist are skipped, so a rerun resumes.
A file that cannot be read is reported by name and the others are still done; the exit
status is 1 if any file failed. --server sends the files to a running service instead,
several at once, retrying a 503 after its Retry-After. --ray runs the same code on a Ray
cluster with Ray Data (service.ray_job), for folders or object storage URIs.
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
from typing import TypeVar

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
Key = TypeVar("Key")


@dataclass
class Task:
    source: Path
    target: Path  # for a folder: the same name, with the answer format's suffix where the format cannot be kept
    image_format: str | None = None  # None: the upload's own (service.codecs.formats.same_format)


def is_image_name(name: str) -> bool:
    """Whether a folder run relights a file of this name: not hidden, and a suffix Pillow opens."""
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def answer_name(name: str) -> str:
    """A file's name -> its output's: the same, or the answer format's suffix where its own format is not written."""
    path = Path(name)
    return path.stem + answer_suffix(path.suffix)


def folder_tasks(in_dir: Path, out_dir: Path) -> list[Task]:
    sources = sorted(source for source in in_dir.iterdir() if source.is_file() and is_image_name(source.name))
    return [Task(source, out_dir / answer_name(source.name)) for source in sources]


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


def answer(decoded: DecodedImage, relit: np.ndarray, image_format: str | None) -> bytes:
    """Relit uint8 (H, W, 3) sRGB pixels of `decoded` encoded as `image_format`, else the input's own format
    (service.codecs.formats.same_format), with its alpha, colour space and metadata."""
    return encode(relit, decoded.alpha, image_format or same_format(decoded.source_format), decoded.metadata)


def failure_reason(error: Exception) -> str:
    """What the report of a file that failed says: an ImageError's detail, else the error's type and message."""
    return error.detail if isinstance(error, ImageError) else f"{type(error).__name__}: {error}"


class Relighter:
    """The service's engine and tiling (RELIGHT_* settings): decoded images in forward passes, relit pixels out."""

    def __init__(self, settings: Settings):
        self.engine = Engine(settings)
        self.tiling = Tiling(
            settings.tile_size, settings.tile_overlap, settings.max_batch_size, settings.max_batch_pixels
        )

    def batches(self, items: list[tuple[Key, DecodedImage]]) -> Iterator[list[tuple[Key, DecodedImage]]]:
        """The items in forward passes: one decoded shape each (EXIF orientation can turn an image), at most as
        many as the batch size and pixel budget allow; in their given order within a shape."""
        shape = lambda item: item[1].rgb.shape  # noqa: E731
        for (height, width, _), same in itertools.groupby(sorted(items, key=shape), key=shape):
            same = list(same)
            limit = self.tiling.batch_limit(height, width)
            for first in range(0, len(same), limit):
                yield same[first : first + limit]

    def relight(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 (H, W, 3) images of one shape -> relit, the same shape: one forward pass, or tiles for each
        image with a side above the tile size."""
        height, width = images[0].shape[:2]
        tiling = self.tiling
        if max(height, width) > tiling.tile:
            limit = tiling.batch_limit(min(height, tiling.tile), min(width, tiling.tile))
            return [relight_tiled(self.run, image, tiling.tile, tiling.overlap, limit) for image in images]
        return list(self.run(np.stack(images)))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.engine.run(batch).images


class Failures:
    def __init__(self, bar: tqdm):
        self.bar, self.names = bar, []

    def report(self, task: Task, reason: str) -> None:
        self.names.append(task.source.name)
        self.bar.write(f"relight: {task.source}: {reason}", file=sys.stderr)


def relight_locally(tasks: list[Task], bar: tqdm, failures: Failures) -> None:
    settings = Settings()
    relighter = Relighter(settings)
    for group in same_size_groups(tasks, settings.max_pixels, relighter, failures, bar):
        outputs = relighter.relight([decoded.rgb for _, decoded in group])
        for (task, decoded), output in zip(group, outputs, strict=True):
            try:
                write(task, answer(decoded, output, task.image_format))
            except ImageError as error:  # an answer format that cannot hold this size (service.codecs.limits)
                failures.report(task, failure_reason(error))
            bar.update()


def same_size_groups(
    tasks: list[Task], max_pixels: int, relighter: Relighter, failures: Failures, bar: tqdm
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
        limit = relighter.tiling.batch_limit(size[1], size[0])
        same = list(same)
        for first in range(0, len(same), limit):
            group = []
            for task in same[first : first + limit]:
                try:
                    group.append((task, decode(task.source.read_bytes(), max_pixels)))
                except (ImageError, OSError) as error:
                    failures.report(task, failure_reason(error))
                    bar.update()
            yield from relighter.batches(group)


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


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # Strings, not paths: with --ray they may be URIs, which Path would mangle (s3://b -> s3:/b).
    parser.add_argument("source", help="an image, or a folder of images (with --ray: a folder or a URI)")
    parser.add_argument("out_dir", nargs="?", help="where a folder's relit images go")
    parser.add_argument("-o", "--output", type=Path, help="the relit file, for one image (default NAME-relit.EXT)")
    parser.add_argument("--server", help="URL of a running relight service to send the images to")
    parser.add_argument("--jobs", type=int, default=4, help="uploads in flight at once with --server")
    parser.add_argument("--api-key", default=os.environ.get("RELIGHT_API_KEY"), help="for --server")
    ray = parser.add_argument_group("on a Ray cluster (pip install 'relight[ray]')")
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="run on the Ray cluster at ADDRESS; without one, RAY_ADDRESS's, else one started on this "
                     "machine, else a new local one. IN and OUT may be URIs: s3://, gs://, file://")  # fmt: skip
    ray.add_argument("--actors", type=int, help="relighting actors, one model each (default: one per GPU, or 1)")
    ray.add_argument("--gpus-per-actor", type=float, help="GPUs each actor takes (default: 1 where there are GPUs)")
    ray.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs (torch threads) each CPU actor takes")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.ray is not None:
        sys.exit(relight_on_ray(parser, args))
    source, out_dir = Path(args.source), Path(args.out_dir) if args.out_dir else None
    if source.is_dir():
        if out_dir is None:
            parser.error("a folder needs OUT_DIR: relight IN_DIR OUT_DIR")
        tasks = folder_tasks(source, out_dir)
    elif source.is_file():
        tasks = [file_task(source, args.output or out_dir)]
    else:
        parser.error(f"{source}: no such file or folder")
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


def relight_on_ray(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int | str:
    """relight IN OUT --ray: the exit status, 1 when any file failed, or a message for a job that cannot start."""
    if args.out_dir is None or args.output or args.server:
        parser.error("--ray relights a folder or URI into another: relight IN OUT --ray [ADDRESS]")
    try:
        from service import ray_job  # the `ray` extra: only this path needs it
    except ModuleNotFoundError as error:
        parser.error(f"--ray needs Ray ({error}): pip install 'relight[ray]'")
    try:
        failed = ray_job.relight_folder(args.source, args.out_dir, Settings(), args.ray or None, args.actors,
                                        args.gpus_per_actor, args.cpus_per_actor)  # fmt: skip
    except ray_job.JobError as error:
        return f"relight: {error}"
    return 1 if failed else 0


if __name__ == "__main__":
    main()
