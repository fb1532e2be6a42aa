"""The page's built-in example photos: what ships (fast tier) and GET /examples/{name} on the real service."""

import fnmatch
import io
import re
import tomllib
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.http.examples import CACHE_CONTROL, NAMES
from service.http.page import PAGE
from tests.server import running_server

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "service" / "http" / "static" / "examples"


@pytest.mark.fast
def test_each_example_is_a_small_square_jpeg_the_network_takes_unpadded():
    for name in NAMES:
        data = (EXAMPLES_DIR / name).read_bytes()
        image = Image.open(io.BytesIO(data))
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (384, 384)), name
        assert len(data) < 80_000, name


@pytest.mark.fast
def test_the_page_offers_exactly_the_allowed_examples_and_the_package_ships_them():
    assert sorted(re.findall(r'data-example="([^"]+)"', PAGE)) == sorted(NAMES)
    assert sorted(re.findall(r'src="examples/([^"]+)"', PAGE)) == sorted(NAMES)
    assert sorted(path.name for path in EXAMPLES_DIR.iterdir() if path.suffix == ".jpg") == sorted(NAMES)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name in NAMES:
        assert any(fnmatch.fnmatch(f"static/examples/{name}", glob) for glob in package_data["service.http"]), name
        assert files("service.http").joinpath("static", "examples", name).is_file()


@pytest.fixture(scope="module")
def server(weights_file, tmp_path_factory):
    with running_server(weights_file, tmp_path_factory.mktemp("logs")) as running:
        yield running


def test_an_example_is_served_as_shipped_with_cache_headers(server):
    for name in NAMES:
        response = httpx.get(f"{server.url}/examples/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == CACHE_CONTROL
        assert response.content == (EXAMPLES_DIR / name).read_bytes()
        again = httpx.get(f"{server.url}/examples/{name}", headers={"If-None-Match": response.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
    etags = {httpx.get(f"{server.url}/examples/{name}").headers["etag"] for name in NAMES}
    assert len(etags) == len(NAMES)


OUTSIDE = ["nope.jpg", "SQUARE.JPG", "index.html", "%2E%2E", "..%2Findex.html", "..%2F..%2Fpage.py"]


@pytest.mark.parametrize("name", OUTSIDE)
def test_only_the_allow_list_is_served(server, name):
    response = httpx.get(f"{server.url}/examples/{name}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    if "%2F" not in name:  # one path segment reaches the route, which names the examples there are
        assert "square.jpg" in response.json()["detail"]
