"""`relight`: relight photos on this machine with the local model, or through a running service.

    relight IN_DIR OUT_DIR                          # every image in a folder, names and formats kept
    relight photo.jpg -o relit.jpg                  # one file (the format follows -o's suffix)
    relight photo.jpg OUT_DIR                       # one file into a folder, its name and format kept
    relight IN_DIR OUT_DIR --server http://host:8000 --jobs 4
    relight s3://bucket/photos s3://bucket/relit --ray [ADDRESS]   # on a Ray cluster (the `ray` extra)

Locally it runs the service's own code: the same decoding (colour profile and metadata
kept), the engine (its device and fast precision, RELIGHT_* settings), images of one size
batched, big images in tiles. Outputs that already exist are skipped, so a rerun resumes.
A file that cannot be read is reported by name and the others are still done; the exit
status is 1 if any file failed. --server sends the files to a running service instead,
several at once, retrying a 503 after its Retry-After. --ray runs the same code on a Ray
cluster with Ray Data (service.command.ray_job), for folders or object storage URIs.
"""

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from model.weights import WeightsError
from service.command.local import relight_locally
from service.command.server import relight_on_server
from service.command.tasks import Failures, answer_name, file_task, folder_tasks
from service.inference.engine import DeviceUnavailable
from service.settings import Settings


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relight", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # Strings, not paths: with --ray they may be URIs, which Path would mangle (s3://b -> s3:/b).
    parser.add_argument("source", help="an image, or a folder of images (with --ray: a folder or a URI)")
    parser.add_argument("out_dir", nargs="?", help="the folder the relit images go in (made if missing)")
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
        if out_dir is not None and (args.output or out_dir.is_file()):
            parser.error(f"{out_dir}: OUT_DIR is a folder; name one output file with -o")
        # A second name is a folder here too (the relit file goes in it under its own name), never the output file.
        tasks = [file_task(source, args.output or (out_dir / answer_name(source.name) if out_dir else None))]
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
            try:
                relight_locally(todo, bar, failures)
            except WeightsError as error:
                sys.exit(f"relight: cannot use the weights: {error}")
            except DeviceUnavailable as error:
                sys.exit(f"relight: cannot start: {error}")
    if failures.names:
        sys.exit(f"relight: {len(failures.names)} of {len(todo)} images failed: {', '.join(failures.names)}")


def relight_on_ray(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int | str:
    """relight IN OUT --ray: the exit status, 1 when any file failed, or a message for a job that cannot start."""
    if args.out_dir is None or args.output or args.server:
        parser.error("--ray relights a folder or URI into another: relight IN OUT --ray [ADDRESS]")
    try:
        from service.command import ray_job  # the `ray` extra: only this path needs it
    except ModuleNotFoundError as error:
        parser.error(f"--ray needs Ray ({error}): pip install 'relight[ray]'")
    try:
        failed = ray_job.relight_folder(args.source, args.out_dir, Settings(), args.ray or None, args.actors,
                                        args.gpus_per_actor, args.cpus_per_actor)  # fmt: skip
    except ray_job.JobError as error:
        return f"relight: {error}"
    return 1 if failed else 0
