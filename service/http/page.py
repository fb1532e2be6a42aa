"""The page a browser gets at `/`: choose or drop a photo (or a built-in example), see it before and after, see
which weights made the answer, download it.

Plain HTML with its CSS and JavaScript inline, served from the package with its example photos
(service.http.examples): no build step and nothing fetched from elsewhere, so it works offline.
API clients asking for `/` get the JSON service description instead (also always at `/info`).
"""

from importlib.resources import files

from fastapi import Request
from fastapi.responses import HTMLResponse

PAGE = files("service.http").joinpath("static", "index.html").read_text(encoding="utf-8")
# The page runs only its own inline script; its images are blob: URLs it makes itself and the built-in examples
# (GET /examples/..., same origin).
POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def wants_page(request: Request) -> bool:
    """Browsers navigating to a page list text/html in Accept; curl, httpx and fetch() send */*."""
    return "text/html" in request.headers.get("accept", "").lower()


def page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"})
