"""`relight IN OUT --ray [ADDRESS]`: the local command's work, spread over a Ray cluster with Ray Data.

IN and OUT are local folders or URIs pyarrow reads and writes (file://, s3://, gs://, ...). The
pipeline streams (Ray Data's backpressure keeps memory bounded whatever the dataset's size):

    file names -> read + decode (CPU tasks) -> relight (actors: one model each) -> encode + write (CPU tasks)

(with CPU actors, Ray Data fuses reading and decoding into the actors' processes: both ask for CPUs).
Every step is the local command's own code (service.command.local and .tasks): the same decoding,
colour management and metadata, the same engine and tiling, the same output names and formats, so a file
relit here has the bytes the local command gives it (on a CPU where torch runs on as many threads:
oneDNN's fp32 sums can differ in the last bit between thread counts). An actor loads the weights once and takes the
GPUs given to it (--gpus-per-actor), or runs on the CPU where the cluster has none. A file that
cannot be read, decoded, relit or written is listed in OUT/relight-failures.csv with the reason and
the others go on; outputs already in OUT are skipped, so a rerun resumes.

Workers import this module, so every node needs relight installed with its `ray` extra (the
image in deploy/kuberay does), and a local folder must be one that every node sees (one machine,
or a shared filesystem); use object storage otherwise.
"""

import csv
import io
import math
import sys
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TypedDict

import numpy as np
import ray
import torch
from pyarrow import fs

from model.files import write_whole
from model.weights import WeightsError
from service.codecs.imaging import DecodedImage, decode
from service.command.local import Relighter
from service.command.tasks import answer_name, encode_answer, failure_reason, image_names
from service.settings import Settings

FAILURES = "relight-failures.csv"
# File names per read task: small enough to spread decoding over the cluster from the start.
NAMES_PER_BLOCK = 16


class JobError(Exception):
    """A job that cannot start as asked (no such IN, too few CPUs): the message says what to change."""


@lru_cache(maxsize=8)
def filesystem(location: str) -> tuple[fs.FileSystem, str]:
    """A folder URI or local path -> (pyarrow filesystem, path on it); cached: an S3 client is costly to build."""
    return fs.FileSystem.from_uri(location)


def require_folder(location: str) -> None:
    """JobError unless `location` (as located()) is a folder (a prefix, on an object store) that can be listed."""
    filesystem_, folder = filesystem(location)
    try:
        kind = filesystem_.get_file_info(folder).type
    except OSError as error:
        raise JobError(f"{location}: cannot be read ({error})") from None
    if kind == fs.FileType.NotFound:
        raise JobError(f"{location}: no such folder")
    if kind != fs.FileType.Directory:
        raise JobError(f"{location}: a file, not a folder: relight one file without --ray")


def located(location: str) -> str:
    """Local paths made absolute (pyarrow takes only those); URIs unchanged."""
    return location if "://" in location else str(Path(location).resolve())


@dataclass(frozen=True)
class FolderJob:
    """What `relight IN OUT --ray` was asked to do, with the actors it will use (the batcher's Job is one image)."""

    source: str  # IN, as located()
    target: str  # OUT, as located()
    settings: Settings
    actors: int
    gpus_per_actor: float
    cpus_per_actor: float


class NameRow(TypedDict):
    """A file still to relight: its name in IN and its output's name in OUT."""

    name: str
    target: str


class ImageRow(NameRow):
    """A file after decoding, then after relighting: `image` holds the pixels, None once `error` is set.

    `error` is the reason the file failed, "" while it has not: Ray turns a column of Nones into NaNs.
    """

    image: DecodedImage | None
    error: str


class ResultRow(TypedDict):
    """What the job reports of a file: "" where it was relit and written, else why not."""

    name: str
    error: str


def read_and_decode(row: NameRow, source: str, max_pixels: int) -> ImageRow:
    """One file name -> its DecodedImage, or the reason it cannot be read."""
    filesystem_, folder = filesystem(source)
    try:
        with filesystem_.open_input_stream(f"{folder}/{row['name']}") as stream:
            data = stream.readall()
        return ImageRow(**row, image=decode(data, max_pixels), error="")
    except Exception as error:  # one file never stops the job: it goes to the failures manifest
        return ImageRow(**row, image=None, error=failure_reason(error))


class RelightActor:
    """A Ray Data actor: the service's engine, loaded once, relighting batches of decoded images.

    Images of one shape go through in one forward pass (as many as the pixel budget allows),
    big ones in tiles. The rows come back with `image` holding the relit pixels, or `error` set.
    """

    def __init__(self, settings: Settings, threads: int | None):
        if threads is not None:
            # Ray sets OMP_NUM_THREADS to the actor's CPUs; torch's own pool is set here to match.
            torch.set_num_threads(threads)
        self.relighter = Relighter(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Object arrays: a numpy string array would cut a longer reason written into it.
        images, errors = batch["image"].astype(object), batch["error"].astype(object)
        readable = sorted((i for i, error in enumerate(errors) if not error), key=lambda i: batch["name"][i])
        for group in self.relighter.batches([(i, images[i]) for i in readable]):
            try:
                outputs = self.relighter.relight([decoded.rgb for _, decoded in group])
            except Exception as error:
                for i, _ in group:
                    images[i], errors[i] = None, f"relighting failed: {failure_reason(error)}"
                continue
            for (i, decoded), output in zip(group, outputs, strict=True):
                images[i] = replace(decoded, rgb=output)
        return {"name": batch["name"], "target": batch["target"], "image": images, "error": errors}


def encode_and_write(row: ImageRow, target: str) -> ResultRow:
    """Encode a relit image in its answer format and write it to OUT; a row that failed before passes through."""
    if not row["error"]:
        try:
            write_to_store(target, row["target"], encode_answer(row["image"], row["image"].rgb, None))
        except Exception as error:
            return ResultRow(name=row["name"], error=failure_reason(error))
    return ResultRow(name=row["name"], error=row["error"])


def write_to_store(target: str, name: str, data: bytes) -> None:
    """On a local disk through model.files.write_whole, as the local command writes (a hidden .NAME.partial renamed
    into place, removed if the write fails), so an interrupted job leaves no half file to be skipped; object stores
    show an object only once its upload completes."""
    filesystem_, folder = filesystem(target)
    path = f"{folder}/{name}"
    if isinstance(filesystem_, fs.LocalFileSystem):
        write_whole(Path(path), lambda partial: partial.write_bytes(data))
        return
    with filesystem_.open_output_stream(path) as stream:
        stream.write(data)


def names_to_do(job: FolderJob) -> tuple[list[NameRow], int]:
    """The images in IN whose outputs are not in OUT yet (as rows {name, target}), and how many are done."""
    source_fs, source_folder = filesystem(job.source)
    listing = source_fs.get_file_info(fs.FileSelector(source_folder))
    files = (info.base_name for info in listing if info.type == fs.FileType.File)
    names = image_names(files)
    target_fs, target_folder = filesystem(job.target)
    target_fs.create_dir(target_folder, recursive=True)
    existing = {info.base_name for info in target_fs.get_file_info(fs.FileSelector(target_folder))}
    rows = [NameRow(name=name, target=answer_name(name)) for name in names]
    todo = [row for row in rows if row["target"] not in existing]
    return todo, len(rows) - len(todo)


def pipeline(job: FolderJob, rows: list[NameRow]) -> ray.data.Dataset:
    settings = job.settings
    names = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / NAMES_PER_BLOCK)))
    decoded = names.map(read_and_decode, fn_kwargs={"source": job.source, "max_pixels": settings.max_pixels})
    if job.gpus_per_actor > 0:
        resources, threads = {"num_gpus": job.gpus_per_actor}, None
    else:
        settings = settings.model_copy(update={"device": "cpu"})
        resources, threads = {"num_cpus": job.cpus_per_actor}, max(1, round(job.cpus_per_actor))
    relit = decoded.map_batches(
        RelightActor,
        fn_constructor_kwargs={"settings": settings, "threads": threads},
        batch_size=settings.max_batch_size,
        compute=ray.data.ActorPoolStrategy(size=job.actors),
        **resources,
    )
    return relit.map(encode_and_write, fn_kwargs={"target": job.target})


def write_failures(target: str, failures: list[tuple[str, str]]) -> str:
    """Writes OUT/relight-failures.csv (columns path, reason), or removes an earlier run's when none failed."""
    filesystem_, folder = filesystem(target)
    path = f"{folder}/{FAILURES}"
    if not failures:
        if filesystem_.get_file_info(path).type == fs.FileType.File:
            filesystem_.delete_file(path)
        return path
    text = io.StringIO()
    table = csv.writer(text)
    table.writerow(["path", "reason"])
    table.writerows(failures)
    with filesystem_.open_output_stream(path) as stream:
        stream.write(text.getvalue().encode())
    return path


def run(job: FolderJob) -> int:
    """Relight IN into OUT on the connected Ray cluster; prints a summary, returns the number of files that failed."""
    rows, skipped = names_to_do(job)
    if skipped:
        print(f"relight: skipping {skipped} images already relit in {job.target}", file=sys.stderr)
    failures, relit = [], 0
    start = time.perf_counter()
    if rows:
        for row in pipeline(job, rows).iter_rows():
            if not row["error"]:
                relit += 1
            else:
                failures.append((f"{job.source.rstrip('/')}/{row['name']}", row["error"]))
    seconds = time.perf_counter() - start
    manifest = write_failures(job.target, sorted(failures))
    listed = f" (listed in {manifest})" if failures else ""
    rate = relit / seconds if seconds > 0 else 0.0
    print(
        f"relight: {relit} images relit, {len(failures)} failed{listed}, {skipped} skipped; "
        f"{rate:.2f} images/s over {seconds:.1f} s",
        file=sys.stderr,
    )
    return len(failures)


def actor_shape(
    device: str, gpus_per_actor: float | None, actors: int | None, cpus_per_actor: float, resources: dict[str, float]
) -> tuple[float, int]:
    """(GPUs per actor, actors) for a cluster of `resources` (ray.cluster_resources(): "GPU", "CPU" counts), from
    what was asked (None: the default). By default one actor per GPU, or one CPU actor where the cluster has no GPU
    or `device` (RELIGHT_DEVICE) is cpu. Raises JobError for a CUDA device where the actors get no GPU, and for CPU
    actors that would leave no CPU to read and write; says so on stderr where the actors ask for more GPUs than the
    cluster has now (not refused: an autoscaling cluster adds GPU nodes when actors ask for them)."""
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 and device != "cpu" else 0.0
    if gpus_per_actor > gpus:
        print(f"relight: the actors ask for {gpus_per_actor:g} GPUs each and the cluster has {gpus:g} now: "
              "they wait until it has them (Ctrl-C stops the job)", file=sys.stderr)  # fmt: skip
    if gpus_per_actor == 0 and device.startswith("cuda"):
        # CPU actors would run on the CPU whatever RELIGHT_DEVICE says; one who asked for a GPU should hear it.
        raise JobError(
            f"RELIGHT_DEVICE={device} asks for a GPU, but the actors get none (the cluster has {gpus:g} GPUs): "
            "give the cluster GPUs, or set RELIGHT_DEVICE=auto or cpu"
        )
    if actors is None:
        actors = max(1, int(gpus // gpus_per_actor)) if gpus_per_actor > 0 else 1
    if gpus_per_actor == 0 and actors * cpus_per_actor > cpus - 1:
        raise JobError(
            f"{actors} CPU actors of {cpus_per_actor:g} CPUs leave no CPU of the cluster's {cpus:g} "
            "to read and write images: lower --actors or --cpus-per-actor"
        )
    return gpus_per_actor, actors


def relight_folder(
    source: str,
    target: str,
    settings: Settings,
    address: str | None,
    actors: int | None,
    gpus_per_actor: float | None,
    cpus_per_actor: float,
) -> int:
    """`relight IN OUT --ray [ADDRESS]`: returns the number of files that failed.

    Joins the cluster at `address` (None: RAY_ADDRESS, else a cluster started on this machine, else a
    new local one), with the actors actor_shape() picks. Raises JobError for weights the service would refuse, an
    IN that is not a folder, and what actor_shape() refuses.
    """
    # Checked once here, on the CPU, as the local command checks them: each actor would otherwise refuse the file in
    # its constructor, and Ray reports that as a traceback it cannot even deserialize.
    try:
        Relighter(settings.model_copy(update={"device": "cpu"}))
    except WeightsError as error:
        raise JobError(f"cannot use the weights: {error}") from None
    source, target = located(source), located(target)
    require_folder(source)  # before Ray's start-up, which takes tens of seconds
    if not ray.is_initialized():
        ray.init(address=address)
    gpus_per_actor, actors = actor_shape(settings.device, gpus_per_actor, actors, cpus_per_actor,
                                         ray.cluster_resources())  # fmt: skip
    job = FolderJob(source, target, settings, actors, gpus_per_actor, cpus_per_actor)
    return run(job)
