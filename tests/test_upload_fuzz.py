"""Seeded byte mutations of small valid files in every format the service reads, through what /relight does with
an upload (open and size, choose the answer format, decode, relight with the real network, encode in every
answer format): each case ends in a 4xx ImageError or in answers of the decoded size, never in anything else.

Bounded: CASES cases (a few seconds). The seed is fixed so CI runs the same cases on every CPU kind; set
RELIGHT_FUZZ_SEED (and RELIGHT_FUZZ_CASES) to explore others. A failure names the seed, the case, the file and
the mutations, which is all it takes to replay it.
"""

import io
import os
import random

import numpy as np
import pytest
from PIL import Image

from model.inference import relight_images
from model.weights import load_weights
from service.codecs import heif
from service.codecs.formats import WRITTEN
from service.codecs.imaging import DecodedImage, ImageError, decode_opened, encode, open_upload
from service.codecs.limits import fits
from service.codecs.negotiation import choose_format
from tests.hostile_files import MUTATIONS, profile, psd, save, unwritable_exif, with_unwritable_exif
from tests.images import animated, scene

SEED = int(os.environ.get("RELIGHT_FUZZ_SEED", "20261203"))
CASES = int(os.environ.get("RELIGHT_FUZZ_CASES", "300"))
MAX_PIXELS = 64 * 64  # mutated headers that declare more are refused (413) before anything is decoded
MAX_BYTES = 1 << 20
# Pillow warns about the broken files it reads (corrupt EXIF, truncated tags): expected here, by the thousand.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def seed_files() -> dict[str, bytes]:
    """Small valid files, 16x16 pixels (some 16x24), in every format Pillow reads and writes here, and PSD; not
    ICNS, whose writer always includes a 1024x1024 image."""
    picture, wide = scene(16, 16), scene(16, 24, 1)
    rgba = np.dstack([picture, np.linspace(0, 255, 256).reshape(16, 16).astype(np.uint8)])
    frames = [scene(16, 16, seed) for seed in range(3)]
    grey = Image.fromarray(picture).convert("L")
    files = {
        "png": save(picture, "PNG"),
        "png rgba": save(rgba, "PNG"),
        "png palette trns icc": save(
            Image.fromarray(picture).convert("P"), "PNG", transparency=3, icc_profile=profile("sRGB")
        ),
        "png grey 16": save(Image.fromarray(picture[..., 0].astype(np.uint16) * 257), "PNG"),
        "png exif text": save(picture, "PNG", exif=unwritable_exif(6), pnginfo=text_info()),
        "apng": animated(frames, "PNG"),
        "jpeg": save(picture, "JPEG", quality=90),
        "jpeg exif icc": save(picture, "JPEG", exif=unwritable_exif(6), icc_profile=profile("sRGB")),
        "jpeg progressive": save(wide, "JPEG", progressive=True),
        "jpeg cmyk": save(Image.fromarray(picture).convert("CMYK"), "JPEG"),
        "mpo": multi_frame(frames, "MPO"),
        "webp": save(picture, "WEBP", quality=80),
        "webp lossless rgba": save(rgba, "WEBP", lossless=True, exif=unwritable_exif()),
        "webp animated": animated(frames, "WEBP"),
        "avif": with_unwritable_exif(picture, "AVIF", 6, quality=80),
        "avif rgba": save(rgba, "AVIF", quality=80),
        "avif animated": multi_frame(frames, "AVIF"),
        "gif animated": animated(frames, "GIF"),
        "bmp": save(picture, "BMP"),
        "tiff pages": multi_frame([picture, wide], "TIFF", compression="tiff_lzw"),
        "psd layer": psd(picture, layer=wide[:, :16]),
        "psd grey": psd(np.asarray(grey)[..., None], mode=1),
        "ico": save(picture, "ICO"),
        "dds": save(rgba, "DDS"),
        "im": save(picture, "IM"),
        "jpeg2000": save(picture, "JPEG2000"),
        "msp": save(grey.convert("1"), "MSP"),
        "pcx": save(picture, "PCX"),
        "ppm": save(picture, "PPM"),
        "qoi": save(picture, "QOI"),
        "sgi": save(picture, "SGI"),
        "spider": save(grey.convert("F"), "SPIDER"),
        "tga": save(rgba, "TGA"),
        "xbm": save(grey.convert("1"), "XBM"),
        "blp": save(Image.fromarray(picture).convert("P"), "BLP"),
    }
    if heif.CAN_ENCODE:
        files["heic exif"] = with_unwritable_exif(picture, "HEIF", 6, quality=80)
        files["heic two images"] = multi_frame([wide, picture], "HEIF", primary_index=1, quality=80)
    return files


def text_info():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "a short note")
    info.add_itxt("Title", "ünïcode", zip=True)
    return info


def multi_frame(frames: list[np.ndarray], image_format: str, **options) -> bytes:
    images = [Image.fromarray(frame) for frame in frames]
    return save(images[0], image_format, save_all=True, append_images=images[1:], **options)


@pytest.fixture(scope="module")
def network(weights_file):
    model, metadata = load_weights(weights_file)
    return model, metadata["value_range"]


def decoded_or_refused(data: bytes) -> DecodedImage | int:
    """What /relight does with `data` before the network: the decoded image, or the 4xx status it gets."""
    try:
        upload = open_upload(data, MAX_PIXELS, MAX_BYTES)
        for name in WRITTEN:
            choose_format(name, None, upload.source_format, upload.width, upload.height)
        choose_format(None, "image/webp;q=0.5, */*;q=0.1", upload.source_format, upload.width, upload.height)
        return decode_opened(upload)
    except ImageError as error:
        assert 400 <= error.status < 500, error.detail
        return error.status


def answer_all(cases: dict[str, bytes], network) -> dict[str, int]:
    """Each case through decoding, the network (all at once: one batch per size) and encoding in every answer
    format: name -> 200 or its 4xx status. AssertionError naming the case for anything else."""
    outcomes, decoded = {}, {}
    for name, data in cases.items():
        try:
            result = decoded_or_refused(data)
        except Exception as error:
            raise AssertionError(f"{name}: {type(error).__name__}: {error}") from error
        if isinstance(result, int):
            outcomes[name] = result
        else:
            decoded[name] = result
    model, value_range = network
    relit = relight_images(model, [image.rgb for image in decoded.values()], value_range)
    for (name, image), pixels in zip(decoded.items(), relit, strict=True):
        height, width = image.rgb.shape[:2]
        for answer_format in (answer_format for answer_format in WRITTEN if fits(answer_format, width, height)):
            try:
                answer = Image.open(io.BytesIO(encode(pixels, image.alpha, answer_format, image.metadata)))
            except Exception as error:
                raise AssertionError(f"{name}, answered as {answer_format}: {type(error).__name__}: {error}") from error
            assert answer.size == (width, height), f"{name}, answered as {answer_format}: {answer.size}"
        outcomes[name] = 200
    return outcomes


def test_mutated_files_get_a_4xx_or_an_answer_of_the_decoded_size(network):
    files = seed_files()
    names = sorted(files)
    cases = {}
    for case in range(CASES):
        rng = random.Random(f"{SEED}/{case}")
        name = rng.choice(names)
        mutations = [rng.choice(MUTATIONS) for _ in range(rng.randint(1, 3))]
        data = files[name]
        for mutation in mutations:
            data = mutation(data, rng) or data[:1]
        cases[f"seed {SEED}, case {case}: {name!r} through {[m.__name__ for m in mutations]}"] = data
    outcomes = answer_all(cases, network)
    counts = {status: list(outcomes.values()).count(status) for status in sorted(set(outcomes.values()))}
    print(f"fuzz seed {SEED}: {CASES} cases, outcomes {counts}")
    assert counts.get(200, 0) > CASES // 20  # some mutations leave a readable file: answers were checked too


def test_every_seed_file_is_answered(network):
    outcomes = answer_all(seed_files(), network)
    assert outcomes == dict.fromkeys(outcomes, 200)
