"""Every form a multipart part's file name takes, and bodies without exactly one `image` part: parsed in process
(service.http.uploads, the fast tier) and answered by the real service. Only PNGs here, so these run where the
HEIC tests in test_uploads.py skip for want of an HEVC encoder."""

import asyncio
import io

import httpx
import numpy as np
import pytest
from fastapi import HTTPException, Request
from PIL import Image

from model.weights import SHIPPED_WEIGHTS
from service.http.uploads import read_upload
from tests.images import chunk, scene
from tests.server import running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The shipped weights: their output depends on the input's colours, so pixels that went wrong show."""
    with running_server(SHIPPED_WEIGHTS, tmp_path_factory.mktemp("logs"), dtype="float32") as running:
        yield running


def save(pixels: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


def relit(server, data: bytes) -> httpx.Response:
    response = httpx.post(server.url + "/relight", files={"image": ("photo", data)}, timeout=120)
    assert response.status_code == 200, response.text
    return response


def multipart(*parts: tuple[bytes, bytes], boundary: bytes = b"relight-test-boundary") -> dict:
    """httpx keyword arguments for a multipart body written by hand: each part is (its header lines, its data)."""
    body = b"".join(b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n" for head, data in parts)
    content_type = b"multipart/form-data; boundary=" + boundary
    return {"content": body + b"--" + boundary + b"--\r\n", "headers": {"content-type": content_type.decode()}}


def disposition(parameters: str) -> bytes:
    return ("Content-Disposition: form-data; " + parameters).encode()


PHOTO = save(scene(24, 32, 7), "PNG")
# A PNG of more than 1 MB (Starlette's cap on text fields) for the same pixels: a private ancillary chunk, which
# decoders skip, before IEND.
BIG_PHOTO = PHOTO[:-12] + chunk(b"prVt", bytes(1_200_000)) + PHOTO[-12:]


# Bodies whose one `image` part is the upload, whatever its file name's form (each: a list of (headers, data)).
FILE_NAME_FORMS = pytest.mark.parametrize(
    "parts",
    [
        [(disposition('name="image"; filename="photo.png"'), PHOTO)],
        [(disposition('name="image"; filename="東京の庭.png"'), PHOTO)],
        [(disposition("name=\"image\"; filename*=utf-8''%E6%9D%B1.png"), PHOTO)],
        [(disposition("name=\"image\"; filename*0*=utf-8''%E6%9D; filename*1*=%B1.png"), PHOTO)],
        [(disposition("name=\"image\"; filename=\"a.png\"; filename*=UTF-8''%E6%9D%B1.png"), PHOTO)],
        [(disposition('name="image"'), PHOTO)],
        [(disposition('name="image"; filename=""'), PHOTO)],
        [(disposition("name=image; filename=photo.png"), PHOTO)],
        [(b'CONTENT-DISPOSITION: FORM-DATA; NAME="image"; FILENAME="photo.png"', PHOTO)],
        [(disposition('name="image"') + b"\r\nContent-Type: application/octet-stream", PHOTO)],
        [(disposition('name="image"'), BIG_PHOTO)],
        [(disposition('name="note"'), b"a note"), (disposition("name=\"image\"; filename*=utf-8''x.png"), PHOTO),
         (disposition('name="other"; filename="other.png"'), PHOTO)],
    ],
    ids=["plain", "quoted UTF-8", "RFC 2231", "RFC 2231 continued", "both forms", "no filename", "empty filename",
         "unquoted", "upper case", "no filename, a content type", "no filename, over 1 MB", "among other parts"],
)  # fmt: skip
# Bodies that are refused, with the status and words of the answer.
NOT_ONE_IMAGE = pytest.mark.parametrize(
    ("parts", "status", "words"),
    [
        ([(disposition("name=\"image\"; filename*=utf-8''a.png"), PHOTO), (disposition('name="image"'), PHOTO)],
         422, "exactly one"),
        ([(disposition('name="picture"'), PHOTO)], 422, "missing"),
        ([(disposition('filename="photo.png"'), PHOTO)], 400, "name"),
        ([(disposition('name="field"'), b"x")] * 21, 400, "more than 20 parts"),
    ],
    ids=["two image parts", "no image part", "a part without a name", "too many parts"],
)  # fmt: skip


def parse(body: bytes, content_type: str, chunk_bytes: int = 61) -> bytes:
    """service.http.uploads.read_upload on a request whose body arrives in chunk_bytes pieces (61: headers and
    boundaries are cut mid-way); a body over 64 KiB in 64 KiB pieces."""
    chunk_bytes = chunk_bytes if len(body) < 1 << 16 else 1 << 16
    messages = [{"type": "http.request", "body": body[start : start + chunk_bytes], "more_body": True}
                for start in range(0, len(body), chunk_bytes)]  # fmt: skip
    messages[-1]["more_body"] = False

    async def receive() -> dict:
        return messages.pop(0)

    headers = [(b"content-type", content_type.encode("latin-1"))]
    scope = {"type": "http", "method": "POST", "path": "/relight", "headers": headers, "query_string": b""}
    return asyncio.run(read_upload(Request(scope, receive)))


@pytest.mark.fast
@FILE_NAME_FORMS
def test_the_parser_takes_the_part_named_image_whatever_form_its_file_name_takes(parts):
    body = multipart(*parts)
    expected = BIG_PHOTO if any(data == BIG_PHOTO for _, data in parts) else PHOTO
    assert parse(body["content"], body["headers"]["content-type"]) == expected


@pytest.mark.fast
@NOT_ONE_IMAGE
def test_the_parser_refuses_bodies_without_exactly_one_image_part(parts, status, words):
    body = multipart(*parts)
    with pytest.raises(HTTPException) as refused:
        parse(body["content"], body["headers"]["content-type"])
    assert refused.value.status_code == status and words in refused.value.detail


@pytest.mark.fast
@pytest.mark.parametrize(
    ("content_type", "status", "words"),
    [("image/png", 415, "multipart/form-data"), ("multipart/form-data", 400, "no boundary")],
)
def test_the_parser_refuses_what_is_not_a_multipart_body(content_type, status, words):
    with pytest.raises(HTTPException) as refused:
        parse(PHOTO, content_type)
    assert refused.value.status_code == status and words in refused.value.detail


@FILE_NAME_FORMS
def test_a_part_named_image_is_the_upload_whatever_form_its_file_name_takes(server, parts):
    reference = np.asarray(Image.open(io.BytesIO(relit(server, PHOTO).content)))
    response = httpx.post(server.url + "/relight", timeout=120, **multipart(*parts))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(response.content))), reference)


@NOT_ONE_IMAGE
def test_multipart_bodies_without_exactly_one_image_part_keep_their_4xx(server, parts, status, words):
    response = httpx.post(server.url + "/relight", timeout=120, **multipart(*parts))
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
