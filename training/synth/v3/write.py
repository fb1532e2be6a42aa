"""Writes a generator-v3 set in VIDIT's track-1 layout, in parallel processes, resuming an interrupted one.

    python -m training.synth --version 3 --out /data/synth3 --train 300 --val 45 --size 512 --spp 32

Each pair is one v3.scenes scene rendered twice by v3.render (North/6500 K input, East/4500 K
target) from its own random stream, layout.scene_rng(seed, split, index), so a pair
depends only on those and on the Mitsuba variant, never on the number of workers or the order
of work. Validation pairs are rendered first, so a set stopped early can be validated on.

Noise (llvm_ad_rgb, 512x512, each image the median of 4 passes): against the same scene at
256 samples per pixel, an urban scene with glossy props is within 42.4/40.7 dB PSNR (input/target)
at 16, 44.4/42.0 at 32 (the default) and 46.2/42.6 at 64; a nature scene within 43.3/41.7,
45.9/44.5 and 48.4/47.0: about one 8-bit level RMS at 32. The point light is sampled directly
at every bounce, so only the indirect light is noisy, and what no light reaches is exactly 0.

Resuming: a pair whose two PNGs exist is done (each file is renamed into place whole), and
the run skips it. meta.json, written before any pair,
records the arguments; a run with different ones refuses the folder instead of mixing sets.
"""

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from training.synth.layout import (
    check_same_set,
    make_layout,
    pair_done,
    save_pair,
    scene_number,
    scene_rng,
    set_meta,
    write_meta,
)
from training.synth.v3.render import VARIANTS, LightBlocked, LightModel, RenderSettings, choose_variant, render_pair
from training.synth.v3.scenes import random_scene

MODEL = LightModel()


def start_worker(variant: str, threads: int) -> None:
    """Per process: pick the Mitsuba variant and share the cores with the other workers."""
    import drjit as dr
    import mitsuba as mi

    mi.set_variant(variant)
    dr.set_thread_count(threads)
    # Sphere poles and cone tips leave a few vertices in no proper triangle; Mitsuba warns of their normals.
    mi.set_log_level(mi.LogLevel.Error)


MIN_LIT = 0.05  # of the pixels in each image of a pair brighter than LIT_LEVEL
LIT_LEVEL = 16  # 8-bit


def draw_pair(seed: int, split: str, index: int, size: int, spp: int):
    """(input, target) uint8 (size, size, 3) of scene (seed, split, index).

    A scene is drawn again from the same stream when a light would sit inside or near a shape, or when
    either render is nearly all black (a light behind a building): such a pair teaches nothing
    but guessing a whole scene.
    """
    rng = scene_rng(seed, split, index)
    while True:
        scene = random_scene(rng)
        exposure = float(rng.uniform(*MODEL.irradiance))
        sampler_seed = int(rng.integers(2**31))
        try:
            pair = render_pair(scene, size, exposure, MODEL, RenderSettings(spp=spp), sampler_seed)
        except LightBlocked:
            continue
        if all((image.max(-1) > LIT_LEVEL).mean() >= MIN_LIT for image in pair):
            return pair


def render_job(job: tuple[Path, int, str, int, int, int, int]) -> float:
    """Render and write one pair; returns its seconds."""
    out, seed, split, index, number, size, spp = job
    start = time.perf_counter()
    save_pair(out, split, number, *draw_pair(seed, split, index, size, spp))
    return time.perf_counter() - start


def write_dataset_v3(
    out: Path, train: int, val: int, size: int, seed: int, spp: int = 32,
    workers: int | None = None, variant: str | None = None, progress: bool = True,
) -> float:  # fmt: skip
    """Render the pairs of the set that are not on disk yet; returns seconds taken.

    Raises ValueError for an unknown variant, or when `out` holds a set made with other arguments.
    """
    import mitsuba as mi

    start = time.perf_counter()
    out = Path(out)
    if variant is None:
        variant, why = choose_variant()
    elif variant not in VARIANTS:
        raise ValueError(f"unknown Mitsuba variant {variant!r}: use one of {', '.join(VARIANTS)}")
    else:
        why = "asked for"
    arguments = {"train": train, "val": val, "size": size, "seed": seed, "spp": spp}
    renderer = {"name": "mitsuba", "version": mi.__version__, "variant": variant, **asdict(RenderSettings(spp))}
    meta = set_meta("3", arguments, renderer=renderer, lights=asdict(MODEL))
    check_same_set(out, meta)
    make_layout(out)
    write_meta(out, meta)
    order = [("validation", i) for i in range(val)] + [("train", i) for i in range(train)]
    jobs = [
        (out, seed, split, i, scene_number(split, i, train), size, spp)
        for split, i in order
        if not pair_done(out, split, scene_number(split, i, train))
    ]
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(jobs)))
    if progress:
        print(f"Mitsuba {variant} ({why}); {len(jobs)} of {len(order)} pairs to render, {workers} worker(s)")
    if workers == 1:
        start_worker(variant, cores)
        results = map(render_job, jobs)
        pool = None
    else:
        context = get_context("spawn")  # Dr.Jit's thread pools do not survive a fork
        pool = ProcessPoolExecutor(workers, context, start_worker, (variant, max(1, cores // workers)))
        results = pool.map(render_job, jobs)
    try:
        for _ in tqdm(results, total=len(jobs), desc="rendering", unit="pair", disable=not progress):
            pass
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return time.perf_counter() - start
