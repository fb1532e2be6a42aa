"""/relight's multipart body parsed as it streams in: the bytes of its one part named `image`."""

from fastapi import HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.http.middleware import BodyTooLarge, UploadTooSlow

# Parts in a /relight body: the image and a few form fields a page may add; more is no photo upload.
MAX_PARTS = 20


class ImageParts:
    """python-multipart's callbacks for /relight's body: the parts named `image`, whatever form their file name takes.

    Starlette's form parser decides file or text field by a plain `filename` parameter alone, so a part with only
    RFC 2231's `filename*=utf-8''...` (python-multipart ignores the extended syntax, which RFC 7578 forbids but
    clients send) or with no file name at all became a text field: decoded to str and capped at 1 MB. Here the
    field name alone decides, as for a browser's form; other parts are counted and dropped unread. A part counts
    once its closing boundary has arrived. `images`: the bodies of the complete `image` parts, in order.
    """

    def __init__(self, max_parts: int):
        self.max_parts, self.parts = max_parts, 0
        self.images: list[bytearray] = []
        self.header_name, self.header_value, self.disposition = bytearray(), bytearray(), b""
        self.body: bytearray | None = None

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in dir(self) if name.startswith("on_")}

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise MultipartParseError(f"more than {self.max_parts} parts")
        self.disposition, self.body = b"", None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_name, self.header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        if b"name" not in options:
            raise MultipartParseError('a part has no Content-Disposition "name"')
        self.body = bytearray() if options[b"name"] == b"image" else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.body is not None:
            self.body += data[start:end]

    def on_part_end(self) -> None:
        if self.body is not None:
            self.images.append(self.body)


async def read_upload(request: Request) -> bytes:
    """The bytes of the multipart part named `image`: 415 if the body is not multipart, 400 if it cannot be
    parsed, 422 without exactly one such part."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise HTTPException(415, "send the image as multipart/form-data with a file field named 'image'")
    parts = ImageParts(MAX_PARTS)
    try:
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        if not boundary:
            raise MultipartParseError("the Content-Type has no boundary")
        parser = MultipartParser(boundary, parts.callbacks())
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (HTTPException, BodyTooLarge, UploadTooSlow):
        raise
    except Exception as error:  # the multipart parser raises several types for malformed bodies; a client gone
        raise HTTPException(400, f"the multipart body cannot be parsed: {error}") from None
    if not parts.images:
        raise HTTPException(422, "missing the multipart file field 'image'")
    if len(parts.images) > 1:
        raise HTTPException(422, "send exactly one 'image' field")
    return bytes(parts.images[0])
