"""The API's written description beyond what FastAPI derives: /relight's responses, request body and text, and the
ErrorDetail schema every error answer has."""

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.codecs.formats import MEDIA_TYPES
from service.codecs.heif import CAN_ENCODE as HEIC_ENCODER


class ErrorDetail(BaseModel):
    detail: str


def error_response(status: int, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}},
    }


RELIGHT_RESPONSES = {
    200: {"description": "The relit image, same width and height as the upload.",
          "content": {mime: {"schema": {"type": "string", "format": "binary"}} for mime in MEDIA_TYPES.values()}},
    400: error_response(400, "The upload cannot be decoded (truncated, corrupt) or the body is malformed."),
    401: error_response(401, "RELIGHT_API_KEY is set and X-API-Key is missing or wrong."),
    406: error_response(406, "Accept refuses every answer format, or allows none that can hold this image's size."),
    408: error_response(408, "The request body was not received within RELIGHT_UPLOAD_TIMEOUT_S."),
    413: error_response(413, "More than RELIGHT_MAX_UPLOAD_BYTES bytes (metadata counted as decompressed), more than "
                             "RELIGHT_MAX_PIXELS pixels, or more pixels than this device can relight within "
                             "RELIGHT_REQUEST_TIMEOUT_S."),
    415: error_response(415, "Not multipart/form-data, or the file is not an image."),
    422: error_response(422, "No `image` part, more than one, an unknown `format` (the detail lists the names), or a "
                             "`format` that cannot hold this image's size (the detail names the formats that can)."),
    500: error_response(500, "The model failed on this request's batch (never caused by an upload)."),
    503: error_response(503, "Queue full, too much work ahead to finish before the deadline, starting up or "
                             "draining; retry after Retry-After seconds."),
    504: error_response(504, "No answer within RELIGHT_REQUEST_TIMEOUT_S."),
}  # fmt: skip

RELIGHT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary", "description": "the photo"}},
                }
            }
        },
    }
}


HEIC_ANSWER = (
    "HEIC uploads are answered as HEIC (this server's libheif has an HEVC encoder)"
    if HEIC_ENCODER
    else "HEIC uploads are answered as JPEG (this server's libheif has no HEVC encoder, so `heic` is no answer format)"
)
RELIGHT_DESCRIPTION = (
    "Upload one image as the multipart field `image` (PNG, JPEG, WebP, HEIC/HEIF, AVIF, GIF, BMP, TIFF, ...), with "
    "any file name or none (`filename`, `filename*=utf-8''...`). The answer is the same scene lit from the East at "
    "4500 K, at the same width and height. Format: `?format=` if given, else the Accept header's most preferred "
    "answer format (q-values weighed; q=0 refuses a format), else the upload's own format when it is PNG, JPEG, "
    "WebP or AVIF, else PNG; " + HEIC_ANSWER + "; always one that can hold the image's size (WebP: 16383 pixels a "
    "side, ...), else 422 or 406. "
    "Formats may be named in any usual spelling, in any case (`jpg`, `JPEG`, `image/jpg`, `heif`, ...: the `format` "
    "parameter lists them). An embedded ICC profile is converted to sRGB for the network and the answer converted "
    "back into the upload's colour space with the same profile (CMYK and grey uploads come back in sRGB with its "
    "profile). EXIF (orientation set to 1), DPI, XMP and PNG text chunks are carried over where the answer's format "
    "holds them. EXIF orientation (and HEIF's own rotation) is applied first. Alpha is carried over unchanged to "
    "PNG, WebP, AVIF and HEIC answers (JPEG drops it); 16-bit images are reduced to 8 bits; animations give their "
    "first frame, multi-image files their primary image. Images with a side above RELIGHT_TILE_SIZE are relit in "
    "overlapping tiles."
)


def openapi_with_error_schema(app: FastAPI) -> dict:
    """The app's OpenAPI document with the ErrorDetail schema the error responses refer to; built once."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorDetail"] = ErrorDetail.model_json_schema()
        app.openapi_schema = schema
    return app.openapi_schema
