"""Photos keep what they carry through /relight: format, colour space and profile, EXIF, DPI, XMP, text."""

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from model.weights import SHIPPED_WEIGHTS
from service.codecs.colour import SRGB_ICC, AnswerColour
from service.codecs.fastjpeg import decode_jpeg
from service.codecs.fastpng import encode_png
from service.codecs.imaging import ImageError, Metadata, decode, encode, open_upload, plain_jpeg
from tests.images import scene
from tests.server import running_server

ADOBE_RGB = Path("/usr/share/color/icc/colord/AdobeRGB1998.icc")  # Debian's colord-data
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
MAKE, ORIENTATION = 0x010F, 0x0112


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The shipped weights: their output depends on the input's colours (seeded random weights' hardly does)."""
    with running_server(SHIPPED_WEIGHTS, tmp_path_factory.mktemp("logs"), dtype="float32") as running:
        yield running


def relight(server, data: bytes, **params) -> httpx.Response:
    response = httpx.post(server.url + "/relight", files={"image": ("photo", data)}, params=params, timeout=60)
    assert response.status_code == 200, response.text
    return response


def save(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


@pytest.mark.skipif(not ADOBE_RGB.is_file(), reason="Debian's colord-data is not installed (.ci/run installs it)")
def test_a_non_srgb_photo_is_relit_in_srgb_and_answered_in_its_own_colour_space(server):
    adobe = ImageCms.ImageCmsProfile(str(ADOBE_RGB))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    intent = ImageCms.Intent.RELATIVE_COLORIMETRIC
    photo = Image.fromarray(scene(48, 64, 5))
    tagged = relight(server, save(photo, "PNG", icc_profile=adobe.tobytes()))
    answer = Image.open(io.BytesIO(tagged.content))
    assert answer.info["icc_profile"] == adobe.tobytes()
    # The same photo converted to sRGB by the client and sent without a profile: what the network should see.
    as_srgb = ImageCms.applyTransform(photo, ImageCms.buildTransform(adobe, srgb, "RGB", "RGB", intent))
    reference = np.asarray(Image.open(io.BytesIO(relight(server, save(as_srgb, "PNG")).content)))
    back_in_srgb = ImageCms.applyTransform(answer, ImageCms.buildTransform(adobe, srgb, "RGB", "RGB", intent))
    difference = np.abs(np.asarray(back_in_srgb).astype(int) - reference.astype(int))
    # Two 8-bit conversions apart: an sRGB -> Adobe RGB -> sRGB round trip alone moves dark colours by up to 10.
    assert difference.mean() < 0.5 and difference.max() <= 12, (difference.mean(), difference.max())
    # Had the service ignored the profile, the network would have seen other pixels.
    ignored = np.asarray(Image.open(io.BytesIO(relight(server, save(photo, "PNG")).content)))
    assert np.abs(ignored.astype(int) - reference.astype(int)).mean() > 2


def test_jpeg_keeps_its_format_exif_dpi_and_xmp(server):
    photo = Image.fromarray(scene(24, 36, 2))
    exif = photo.getexif()
    exif[MAKE], exif[ORIENTATION] = "relight test camera", 6
    response = relight(server, save(photo, "JPEG", quality=95, exif=exif, dpi=(300, 300), xmp=XMP))
    assert response.headers["content-type"] == "image/jpeg"
    answer = Image.open(io.BytesIO(response.content))
    assert answer.size == (24, 36)  # orientation 6 applied...
    assert answer.getexif()[ORIENTATION] == 1  # ...and recorded as applied
    assert answer.getexif()[MAKE] == "relight test camera"
    assert answer.info["dpi"] == pytest.approx((300, 300))
    assert answer.info["xmp"] == XMP


def test_png_keeps_its_text_chunks_and_other_formats_come_back_as_png(server):
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "a relit scene")
    png = relight(server, save(Image.fromarray(scene(20, 20)), "PNG", pnginfo=info))
    assert Image.open(io.BytesIO(png.content)).text["Title"] == "a relit scene"
    webp = relight(server, save(Image.fromarray(scene(20, 20)), "WEBP", quality=90))
    assert webp.headers["content-type"] == "image/webp"
    for image_format in ("GIF", "BMP", "TIFF"):
        other = relight(server, save(Image.fromarray(scene(20, 20)), image_format))
        assert other.headers["content-type"] == "image/png", image_format
    assert relight(server, save(Image.fromarray(scene(20, 20)), "GIF"), format="jpeg").headers["content-type"] == (
        "image/jpeg"
    )


def test_a_profile_that_cannot_be_read_is_ignored_with_a_log_line(server):
    broken = b"\0\0\0\x20this is not an ICC profile at all"
    response = relight(server, save(Image.fromarray(scene(20, 20)), "PNG", icc_profile=broken))
    assert Image.open(io.BytesIO(response.content)).size == (20, 20)
    assert "cannot be read" in server.log()


def test_png_answers_are_lossless_through_fpng_and_through_pillow_when_it_cannot():
    pixels = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    alpha = np.random.default_rng(1).integers(0, 256, (64, 48), dtype=np.uint8)
    fast = encode_png(pixels)
    assert fast is not None and np.array_equal(np.asarray(Image.open(io.BytesIO(fast))), pixels)
    for rgb, a in ((pixels, None), (pixels, alpha)):
        decoded = np.asarray(Image.open(io.BytesIO(encode(rgb, a, "png"))))
        assert np.array_equal(decoded, rgb if a is None else np.dstack([rgb, a]))
    assert encode_png(np.zeros((4, 4, 2), np.uint8)) is None  # grey + alpha: fpng cannot, Pillow does
    with_profile = encode(pixels, None, "png", Metadata(colour=AnswerColour(SRGB_ICC)))
    assert Image.open(io.BytesIO(with_profile)).info["icc_profile"] == SRGB_ICC
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(with_profile))), pixels)


@pytest.mark.parametrize(
    "options",
    [{"subsampling": 0}, {"subsampling": 1}, {"subsampling": 2}, {"progressive": True}, {"restart_marker_rows": 1}],
    ids=["4:4:4", "4:2:2", "4:2:0", "progressive", "restart markers"],
)
def test_plain_jpegs_decode_through_simplejpeg_to_pillows_pixels_and_metadata(options):
    exif = Image.Exif()
    exif[MAKE] = "relight test"
    data = save(Image.fromarray(scene(67, 91)), "JPEG", quality=90, exif=exif, dpi=(300, 300), **options)
    decoded = plain_jpeg(open_upload(data, 10**6))  # None would mean Pillow's path
    assert np.array_equal(decoded.rgb, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    carried = Image.Exif()
    carried.load(decoded.metadata.exif)
    assert carried[MAKE] == "relight test"
    assert decoded.metadata.dpi == (300, 300)


def test_a_truncated_jpeg_is_refused_as_pillow_refuses_it():
    data = save(Image.fromarray(scene(64, 64)), "JPEG", quality=90)
    assert decode_jpeg(data[: len(data) // 2]) is None
    with pytest.raises(ImageError) as refused:
        decode(data[: len(data) // 2], 10**6)
    assert refused.value.status == 400
