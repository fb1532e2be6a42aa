"""Hostile uploads, round 2 (issue 33): each kind of file that broke the contract, built here, against a real
server on loopback, beside fast in-process checks of the policies (answer-format limits, Accept q-values, EXIF,
the primary image). Every server test ends by checking that the server still answers a plain PNG."""

import io
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image, ImageCms

from service.codecs import heif
from service.codecs.formats import WRITTEN
from service.codecs.imaging import WRITERS, ImageError, decode, decode_opened, open_upload
from service.codecs.limits import LIMITS, fits
from service.codecs.metadata import TEXT_LIMIT, XMP_LIMIT
from service.codecs.negotiation import choose_format
from tests.hostile_files import (
    MODEL,
    USER_COMMENT,
    big_exif,
    big_xmp,
    png_with_chunks,
    profile,
    psd,
    save,
    text_bomb,
    unwritable_exif,
    with_unwritable_exif,
    ztxt,
)
from tests.images import animated, scene
from tests.server import running_server
from tests.test_uploads import run_relight

MAKE, ORIENTATION = 0x010F, 0x0112
MAX_UPLOAD = 4 * 1024 * 1024
HEADER_TIMEOUT = 2.0
PICTURE = scene(24, 32)
needs_heic = pytest.mark.skipif(not heif.CAN_ENCODE, reason="this libheif has no HEVC encoder to make HEIC files with")
EXIF_WRITERS = ["JPEG", "PNG", "WEBP", "AVIF", pytest.param("HEIF", marks=needs_heic)]


@pytest.fixture(scope="module")
def server(weights_file, tmp_path_factory):
    with running_server(
        weights_file, tmp_path_factory.mktemp("logs"), max_upload_bytes=MAX_UPLOAD, header_timeout_s=HEADER_TIMEOUT
    ) as running:
        yield running


def post(server, data: bytes, **kwargs) -> httpx.Response:
    return httpx.post(server.url + "/relight", files={"image": ("upload", data)}, timeout=120, **kwargs)


def relit(server, data: bytes, **kwargs) -> httpx.Response:
    response = post(server, data, **kwargs)
    assert response.status_code == 200, response.text
    return response


def pixels(response: httpx.Response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content))).astype(int)


def assert_still_serves(server) -> None:
    answer = relit(server, save(PICTURE, "PNG"))
    assert answer.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).size == (32, 24)


def refused(server, data: bytes, status: int, *words: str, **kwargs) -> str:
    response = post(server, data, **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail
    return detail


# 1. EXIF that Pillow reads but cannot write back.


@pytest.mark.parametrize("writer", EXIF_WRITERS)
def test_exif_that_cannot_be_written_back_loses_those_tags_and_the_photo_is_relit(server, writer):
    upload = with_unwritable_exif(PICTURE, writer, 6, quality=90)
    answer = Image.open(io.BytesIO(relit(server, upload).content))
    assert answer.size == (24, 32)  # orientation 6 applied: upright, as a viewer shows it
    exif = answer.getexif()
    assert MAKE not in exif and exif[MODEL] == "relight test" and exif.get(ORIENTATION, 1) == 1
    assert exif.get_ifd(0x8769)[USER_COMMENT].endswith(b"kept") and 0x9000 not in exif.get_ifd(0x8769)
    assert_still_serves(server)


def test_unwritable_exif_is_pruned_in_process_tag_by_tag():
    decoded = decode(save(PICTURE, "JPEG", exif=unwritable_exif(6)), 1 << 20)
    exif = Image.Exif()
    exif.load(decoded.metadata.exif)
    assert MAKE not in exif and exif[MODEL] == "relight test" and exif[ORIENTATION] == 1
    assert 0x9000 not in exif.get_ifd(0x8769) and USER_COMMENT in exif.get_ifd(0x8769)


# 2. Headers the decoder rejects while opening (libavif's RuntimeError), in each ISO media format.


@pytest.mark.parametrize("writer", ["AVIF", pytest.param("HEIF", marks=needs_heic)])
@pytest.mark.parametrize("box", [b"pitm", b"iloc", b"iinf", b"ispe"])
def test_a_header_the_decoder_rejects_at_open_gets_a_400_in_our_words(server, writer, box):
    data = save(PICTURE, writer, quality=80)
    at = data.index(box) + 8
    detail = refused(server, data[:at] + b"\0\0\0\0" + data[at + 4 :], 400, "AVIF" if writer == "AVIF" else "HEI")
    assert "Missing" not in detail and "empty image item" not in detail  # libavif's words stay in the log
    assert_still_serves(server)


# 3. Metadata larger than the answer's format holds (one JPEG segment).


@pytest.mark.parametrize("answer_format", WRITTEN)
def test_metadata_larger_than_a_jpeg_segment_is_left_out_in_every_answer_format(server, answer_format):
    icc = profile("sRGB")
    upload = save(PICTURE, "PNG", exif=big_exif(), pnginfo=xmp_info(big_xmp()), icc_profile=icc)
    answer = Image.open(io.BytesIO(relit(server, upload, params={"format": answer_format}).content))
    assert answer.size == (32, 24)
    assert not answer.getexif().get(MODEL) and len(answer.info.get("xmp", b"")) < XMP_LIMIT
    assert answer.info.get("icc_profile") == icc  # what fits still comes back
    assert_still_serves(server)


@needs_heic
def test_a_heic_photo_with_big_xmp_answered_as_jpeg(server):
    small = big_xmp(60_000)
    assert len(small) <= XMP_LIMIT
    for xmp, kept in ((big_xmp(70_000), False), (small, True)):
        upload = save(PICTURE, "HEIF", quality=80, xmp=xmp, exif=big_exif(70_000))
        answer = Image.open(io.BytesIO(relit(server, upload, params={"format": "jpeg"}).content))
        assert (answer.info.get("xmp") == xmp) is kept
        assert not answer.getexif()
    assert_still_serves(server)


def xmp_info(xmp: bytes):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode(), zip=True)
    return info


# 4. Sizes the answer's format cannot encode: decided before the upload is queued.


def test_the_limits_are_the_encoders():
    """At each limit the encoder writes a file that reads back at its size; one pixel past it, it does not."""
    cases = [("webp", 16383, 16384), ("jpeg", 65500, 65501), ("avif", 32768, 32769)]
    for name, inside, outside in cases:
        assert round_trips(name, inside, 1) and not round_trips(name, outside, 1), name
        assert fits(name, inside, 1) and not fits(name, outside, 1) and not fits(name, 1, outside)
    if heif.CAN_ENCODE:
        for width, height in ((4208, 31), (65520, 32)):
            assert round_trips("heic", width, height) and fits("heic", width, height)
            assert not round_trips("heic", width + 1, height) and not fits("heic", width + 1, height)
            assert fits("heic", height, width) and not fits("heic", height, width + 1)
    assert LIMITS["png"].max_side == 2**31 - 1  # PNG's own: no image this service takes comes near it


def round_trips(name: str, width: int, height: int) -> bool:
    writer, settings = WRITERS[name]
    try:
        data = save(np.zeros((height, width, 3), np.uint8), writer, **settings)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size == (width, height)
    except Exception:  # each encoder fails in its own way past its limit
        return False


def test_answer_sizes_past_a_formats_limit_are_refused_or_answered_in_another_format(server):
    strip = save(scene(2, 16384), "PNG")
    batches = server.metric("relight_batch_size_count")
    refused(server, strip, 422, "16383", "png", params={"format": "webp"})
    refused(server, strip, 406, "16383", "png", headers={"Accept": "image/webp"})
    refused(server, save(scene(16, 4209), "PNG"), 422, "4208", params={"format": "heic"})
    refused(server, save(scene(1, 32769), "PNG"), 422, "32768", params={"format": "avif"})
    refused(server, save(scene(1, 65501), "PNG"), 422, "65500", params={"format": "jpeg"})
    assert server.metric("relight_batch_size_count") == batches  # refused before the network saw anything
    for accept, media_type in (("image/webp, */*;q=0.1", "image/png"), ("image/webp, image/jpeg;q=0.5", "image/jpeg")):
        answer = relit(server, strip, headers={"Accept": accept})  # the next acceptable format that holds it
        assert answer.headers["content-type"] == media_type
        assert Image.open(io.BytesIO(answer.content)).size == (16384, 2)
    assert_still_serves(server)


def test_the_relight_command_reports_an_output_format_that_cannot_hold_the_image(tmp_path, weights_file):
    (tmp_path / "strip.png").write_bytes(save(scene(2, 16384), "PNG"))
    result = run_relight(tmp_path / "strip.png", "-o", tmp_path / "strip.webp", weights=weights_file)
    assert result.returncode == 1 and "16383" in result.stderr, result.stderr
    assert not (tmp_path / "strip.webp").exists()


# 5. Multi-image files: the primary image is relit, sized and admitted.


def first_frame(data: bytes) -> np.ndarray:
    """The pixels a viewer shows first: the library's own reading of the file's primary image or first frame."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def multi_frame(frames: list[np.ndarray], image_format: str, **options) -> bytes:
    images = [Image.fromarray(frame) for frame in frames]
    return save(images[0], image_format, save_all=True, append_images=images[1:], **options)


MULTI_IMAGE = {
    "apng": lambda: animated([scene(24, 32, seed) for seed in range(3)], "PNG"),
    "animated webp": lambda: animated([scene(24, 32, seed) for seed in range(3)], "WEBP"),
    "animated avif": lambda: multi_frame([scene(24, 32, seed) for seed in range(3)], "AVIF", quality=90),
    "animated gif": lambda: animated([scene(24, 32, seed) for seed in range(3)], "GIF"),
    "tiff pages of two sizes": lambda: multi_frame([scene(24, 32), scene(48, 64, 1)], "TIFF"),
    "mpo": lambda: multi_frame([scene(24, 32), scene(24, 32, 1)], "MPO"),
}
if heif.CAN_ENCODE:
    MULTI_IMAGE["heic, primary second"] = lambda: multi_frame(
        [scene(48, 64, 1), scene(24, 32)], "HEIF", primary_index=1, quality=90
    )


@pytest.mark.parametrize("name", list(MULTI_IMAGE))
def test_a_multi_image_file_is_relit_by_its_primary_image(server, name):
    data = MULTI_IMAGE[name]()
    primary = first_frame(data)
    assert primary.shape == (24, 32, 3)
    answer = pixels(relit(server, data, params={"format": "png"}))
    alone = pixels(relit(server, save(primary, "PNG"), params={"format": "png"}))
    assert answer.shape == alone.shape and np.abs(answer - alone).max() <= 1
    assert_still_serves(server)


@needs_heic
def test_a_small_primary_does_not_smuggle_a_larger_image_past_the_pixel_limit():
    data = multi_frame([scene(48, 64, 1), scene(24, 32)], "HEIF", primary_index=1, quality=90)
    upload = open_upload(data, max_pixels=24 * 32)  # the 64x48 first image alone would be refused
    assert (upload.width, upload.height) == (32, 24)
    assert decode_opened(upload).rgb.shape == (24, 32, 3)


# 6. Text chunks: bounded in the answer, counted in the upload's cost.


def test_png_text_is_bounded_in_the_answer_and_counted_in_the_uploads_cost(server):
    bomb = text_bomb(PICTURE, 40_000_000)
    assert len(bomb) < 100_000
    refused(server, bomb, 413, "text chunks")  # 40 MB of text from 40 kB: past what is decompressed at all
    refused(server, text_bomb(PICTURE, 6_000_000), 413, "metadata expands", str(MAX_UPLOAD))  # past the cost
    trailing = png_with_chunks(PICTURE, [], after_pixels=[ztxt(f"late {i}", 1_000_000) for i in range(6)])
    refused(server, trailing, 413, "metadata expands")  # the chunks after the pixels count too
    upload = text_bomb(PICTURE, 3_000_000, per_chunk=50_000)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: relit(server, upload), range(8)))
    for answer in answers:
        text = Image.open(io.BytesIO(answer.content)).text
        assert 0 < sum(len(key) + len(value) for key, value in text.items()) <= TEXT_LIMIT
        assert len(answer.content) < 50_000  # not 3 MB of text sent back
    assert_still_serves(server)


# 7. Transparency with a colour profile.


@pytest.mark.parametrize("mode", ["P", "L", "RGB", "LA", "RGBA"])
def test_transparency_survives_with_a_colour_profile(server, mode):
    image = Image.fromarray(PICTURE).convert(mode)
    if mode in ("LA", "RGBA"):
        options = {}
        image.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))))
    else:
        first = image.getpixel((0, 0))
        options = {"transparency": first if not isinstance(first, tuple) else tuple(int(v) for v in first)}
    upload = save(image, "PNG", icc_profile=profile("sRGB"), **options)
    expected = np.asarray(Image.open(io.BytesIO(upload)).convert("RGBA"))[..., 3]
    assert (expected < 255).any()
    for answer_format in ("png", "webp"):
        answer = Image.open(io.BytesIO(relit(server, upload, params={"format": answer_format}).content))
        assert np.array_equal(np.asarray(answer.convert("RGBA"))[..., 3], expected), answer_format
    assert_still_serves(server)


# 8. Photoshop files: the composite is relit; the kinds Pillow does not read are a 415.


def test_photoshop_files_are_relit_by_their_composite(server):
    composite, layer = scene(24, 32), scene(24, 32, 7)
    grey = np.asarray(Image.fromarray(composite).convert("L"))
    lab = np.dstack([np.full((24, 32), 128, np.uint8), np.tile(np.linspace(64, 192, 32).astype(np.uint8), (24, 1)),
                     np.full((24, 32), 160, np.uint8)])  # fmt: skip
    lab_as_srgb = ImageCms.applyTransform(
        Image.fromarray(lab, "LAB"),
        ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"),
    )
    for data, seen in (
        (psd(composite, layer=layer), composite),
        (psd(composite), composite),
        (psd(grey[..., None], mode=1), np.repeat(grey[..., None], 3, axis=-1)),
        (psd(lab, mode=9), np.asarray(lab_as_srgb)),
    ):
        answer = pixels(relit(server, data, params={"format": "png"}))
        alone = pixels(relit(server, save(seen, "PNG"), params={"format": "png"}))
        assert answer.shape[:2] == (24, 32) and np.abs(answer[..., :3] - alone).max() <= 1
    deep = bytearray(psd(composite))
    deep[22:24] = struct.pack(">H", 16)
    refused(server, bytes(deep), 415, "16 bits")
    refused(server, save(composite, "EPS"), 415, "EPS")  # Pillow reads EPS through Ghostscript, absent here
    assert_still_serves(server)


# 9. Slow headers: the server's own bound (service.http.header_deadline), tried with a raw socket.


def test_headers_that_trickle_in_are_cut_off_with_a_408(server):
    host, port = server.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /relight HTTP/1.1\r\nHost: x\r\n")
        answer = trickle(sock, b"X-Padding: " + b"a" * 100)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - started < HEADER_TIMEOUT + 3
    assert_still_serves(server)


def test_a_silent_or_idle_keep_alive_connection_is_closed(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=HEADER_TIMEOUT + 5) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed, unanswered: no request had begun
        assert time.monotonic() - started < HEADER_TIMEOUT + 3
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        answer = trickle(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100)
        assert answer.startswith(b"HTTP/1.1 408"), answer  # the second request's headers had their deadline too
        assert time.monotonic() - started < HEADER_TIMEOUT + 3
    assert_still_serves(server)


def trickle(sock: socket.socket, data: bytes, interval_s: float = 0.2) -> bytes:
    """Send `data` a byte every `interval_s` until the server answers or closes; what it answered."""
    sock.settimeout(interval_s)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            answer = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return b""
        return answer
    return b""


# Accept q-values (fast tier; the server test beside it).


@pytest.mark.parametrize(
    ("accept", "source", "expected"),
    [(None, "JPEG", "jpeg"), ("image/jpeg;q=0", "JPEG", "png"), ("image/jpeg;q=0, image/*", "JPEG", "png"),
     ("image/webp;q=0.5, image/avif;q=0.8", "PNG", "avif"), ("image/webp, image/avif", "PNG", "webp"),
     ("*/*, image/webp", "PNG", "webp"), ("image/*;q=0.9, image/png;q=0.1", "JPEG", "jpeg"),
     ("image/png;q=0.1, image/*;q=0.9", "PNG", "jpeg"), ("application/json", "WEBP", "webp"),
     ("image/webp;q=1.5, image/avif;q=0.2", "PNG", "avif"), ("image/tiff, image/*", "JPEG", "jpeg"),
     ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "JPEG", "avif")],
    ids=lambda value: str(value),
)  # fmt: skip
def test_accept_q_values_are_weighed(accept, source, expected):
    assert choose_format(None, accept, source, 16, 16) == expected


def test_an_answer_format_left_to_the_service_falls_back_to_png_past_its_own_formats_limit():
    assert choose_format(None, None, "WEBP", 16384, 2) == "png"
    assert choose_format(None, "*/*", "HEIF", 4209, 16) == "png"  # a strip x265 cannot write
    assert choose_format(None, None, "HEIF", 4208, 16) == ("heic" if heif.CAN_ENCODE else "jpeg")


def test_accept_that_refuses_every_format_gets_a_406():
    for accept in ("*/*;q=0", "image/*;q=0", ", ".join(f"{name};q=0" for name in WRITTEN)):
        with pytest.raises(ImageError) as refusal:
            choose_format(None, accept, "PNG", 16, 16)
        assert refusal.value.status == 406 and "refuses every format" in refusal.value.detail


def test_q_zero_never_picks_that_format_on_the_server(server):
    jpeg = save(PICTURE, "JPEG", quality=90)
    assert relit(server, jpeg).headers["content-type"] == "image/jpeg"
    assert relit(server, jpeg, headers={"Accept": "image/jpeg;q=0"}).headers["content-type"] == "image/png"
    assert relit(server, jpeg, headers={"Accept": "image/jpeg;q=0.1, image/webp"}).headers["content-type"] == (
        "image/webp"
    )
    refused(server, jpeg, 406, "refuses every format", headers={"Accept": "image/*;q=0"})
    assert_still_serves(server)
