"""GET /examples/{name}: the page's built-in photos, for a visitor with no North-lit photo at hand.

Two North/6500 K inputs of our own generator v3, from scenes no weights were trained or validated on
(the shipped data used seed 0), rendered with

    DRJIT_LIBLLVM_PATH=/usr/lib/x86_64-linux-gnu/libLLVM-19.so python -m training.synth --version 3 \\
        --out /tmp/examples --train 0 --val 6 --size 512 --spp 32 --seed 1234

(Mitsuba 3.9.1, llvm_ad_rgb), then resized to 384x384 with Lanczos and saved as progressive JPEG at
quality 92: square.jpg is validation/input/Image000.png, garden.jpg is validation/input/Image004.png.
They ship in the package (pyproject's package-data), so the page needs no network. 384 is a multiple of
16, so the network runs them unpadded.
"""

import hashlib
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParameter
from fastapi.responses import Response

from service.http.openapi import error_response

# The allow-list: nothing else under static/ can be named, so no path from a request reaches the file system.
NAMES = ("square.jpg", "garden.jpg")
EXAMPLES = {name: files("service.http").joinpath("static", "examples", name).read_bytes() for name in NAMES}
ETAGS = {name: f'"{hashlib.sha256(body).hexdigest()[:16]}"' for name, body in EXAMPLES.items()}
# The files change only with the package, so caches may keep them a day and then revalidate by ETag.
CACHE_CONTROL = "public, max-age=86400"

ExampleName = Annotated[str, PathParameter(description=f"one of: {', '.join(NAMES)}", examples=[NAMES[0]])]

router = APIRouter()


@router.get(
    "/examples/{name}",
    summary="A built-in North-lit example photo (JPEG, 384x384) for the web page",
    response_class=Response,
    responses={
        200: {"description": "The example, image/jpeg.",
              "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        304: {"description": "If-None-Match names this example's ETag: the cached copy is still the one."},
        404: error_response(404, "No example has this name."),
    },
)  # fmt: skip
async def example(request: Request, name: ExampleName) -> Response:
    """The example's JPEG bytes as shipped, or 304 when If-None-Match has its ETag.

    Raises HTTPException 404 for any name outside NAMES.
    """
    if name not in EXAMPLES:
        raise HTTPException(404, f"no example named {name!r}; there are {', '.join(NAMES)}")
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": ETAGS[name]}
    if ETAGS[name] in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(EXAMPLES[name], media_type="image/jpeg", headers=headers)
