"""The web page in a real browser: Playwright driving Debian's chromium against the real service."""

import io
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.images import encode, scene
from tests.server import running_server

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
# Phones (an iPhone 12-15's CSS viewport, and the narrowest in use, an iPhone SE's) at their device pixel ratio,
# and a laptop.
VIEWPORTS = {
    "phone": ({"width": 390, "height": 844}, 2),
    "small phone": ({"width": 320, "height": 568}, 2),
    "desktop": ({"width": 1280, "height": 800}, 1),
}


@pytest.fixture(scope="module")
def server(weights_file, tmp_path_factory):
    with running_server(weights_file, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield browser
        browser.close()


def test_a_browser_gets_the_page_and_an_api_client_the_description(server, browser):
    page = browser.new_page()
    response = page.goto(server.url + "/")
    assert response.headers["content-type"].startswith("text/html")
    assert page.title() == "relight"
    assert page.locator("#file").count() == 1
    page.close()
    assert httpx.get(server.url + "/").json()["service"] == "relight"
    assert httpx.get(server.url + "/info").json()["service"] == "relight"


def test_upload_a_png_see_before_and_after_and_download_it(server, browser, tmp_path):
    photo = tmp_path / "garden.png"
    photo.write_bytes(encode(scene(48, 80, 4)))
    page = browser.new_page(accept_downloads=True)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + "/")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#download", state="visible", timeout=60_000)
    assert page.evaluate("document.getElementById('after').complete")
    assert page.evaluate(
        "[document.getElementById('after').naturalWidth, document.getElementById('after').naturalHeight]"
    ) == [80, 48]
    assert "Relit garden.png in" in page.inner_text("#status")
    assert page.get_attribute("#download", "download") == "garden-relit.png"
    page.fill("#slider", "20")
    assert "20%" in page.get_attribute("#after", "style")
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "saved.png"
    download.value.save_as(saved)
    relit = np.asarray(Image.open(saved))
    assert relit.shape == (48, 80, 3)
    assert not np.array_equal(relit, scene(48, 80, 4))
    assert errors == []


def test_a_refused_upload_shows_the_apis_detail(server, browser, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("these are notes, not a picture\n" * 5)
    page = browser.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    assert "Refused (415)" in page.inner_text("#error")
    assert "not an image" in page.inner_text("#error")
    assert not page.is_visible("#download")


@pytest.fixture(params=list(VIEWPORTS))
def sized_page(request, browser):
    """A fresh page at each of VIEWPORTS; fails the test on any script error."""
    viewport, scale = VIEWPORTS[request.param]
    page = browser.new_page(viewport=viewport, device_scale_factor=scale, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert errors == []


def dash_gaps(ink: np.ndarray) -> tuple[int, int, int]:
    """Along one side of a border (a 1-D mask of inked pixels): the unbroken run before the first dash, the
    longest gap between dashes, and the run after the last dash, in device pixels."""
    inked = np.flatnonzero(ink)
    if inked.size == 0:
        return ink.size, ink.size, ink.size
    between = np.diff(inked) - 1
    return int(inked[0]), int(between.max(initial=0)), int(ink.size - 1 - inked[-1])


def test_the_drop_zone_border_is_one_whole_dashed_box_and_nothing_scrolls_sideways(server, sized_page):
    page = sized_page
    page.goto(server.url + "/")
    zone = page.evaluate("""() => {
        const drop = document.getElementById("drop"), style = getComputedStyle(drop);
        const box = drop.getBoundingClientRect();
        const inside = [...drop.querySelectorAll("*")].every((child) => {
            const r = child.getBoundingClientRect();
            return r.left >= box.left && r.right <= box.right && r.top >= box.top && r.bottom <= box.bottom;
        });
        return {display: style.display, fragments: drop.getClientRects().length, inside,
                styles: ["Top", "Right", "Bottom", "Left"].map((side) => style[`border${side}Style`]),
                width: parseFloat(style.borderTopWidth), radius: parseFloat(style.borderTopLeftRadius),
                left: box.left, right: box.right, top: box.top, bottom: box.bottom, viewport: innerWidth,
                scrollWidth: document.documentElement.scrollWidth};
    }""")
    # An inline drop zone is drawn as one box per line fragment, split around its input: the broken border.
    assert zone["display"] == "block" and zone["fragments"] == 1
    assert zone["styles"] == ["dashed"] * 4
    assert zone["inside"], "something in the drop zone sticks out through its border"
    assert zone["left"] >= 0 and zone["right"] <= zone["viewport"]
    assert zone["scrollWidth"] <= zone["viewport"], "the page scrolls sideways"

    # The pixels on screen (the viewport, so what it clips is missing): along each side, dashes from corner to
    # corner with no gap longer than a few dashes (Chromium's dashes and gaps are 2-3 border widths), and ink in
    # each rounded corner. The broken border of the old screenshot misses whole sides.
    scale = page.evaluate("devicePixelRatio")
    screen = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    top, bottom, left, right = (round(zone[edge] * scale) for edge in ("top", "bottom", "left", "right"))
    shot = screen[max(top, 0) : bottom, max(left, 0) : right]
    width, radius = round(zone["width"] * scale), round(zone["radius"] * scale)
    background = shot[shot.shape[0] // 2, width + 2]  # the padding just inside the left border
    ink = np.abs(shot - background).max(axis=2) > 12
    sides = {
        "top": ink[:width, radius:-radius].any(axis=0),
        "bottom": ink[-width:, radius:-radius].any(axis=0),
        "left": ink[radius:-radius, :width].any(axis=1),
        "right": ink[radius:-radius, -width:].any(axis=1),
    }
    longest_allowed = 2 * 3 * width + 2
    for side, along in sides.items():
        before, gap, after = dash_gaps(along)
        assert max(before, gap, after) <= longest_allowed, f"the {side} border is broken: {before}, {gap}, {after}"
    corners = [ink[:radius, :radius], ink[:radius, -radius:], ink[-radius:, :radius], ink[-radius:, -radius:]]
    assert all(corner.any() for corner in corners)


def test_an_example_is_relit_through_relight_and_names_the_weights(server, sized_page, tmp_path):
    page = sized_page
    page.goto(server.url + "/")
    thumbnails = page.evaluate("""() => [...document.querySelectorAll(".example")].map((button) => {
        const image = button.querySelector("img"), box = button.getBoundingClientRect();
        return {name: button.dataset.example, width: image.naturalWidth,
                shown: box.width > 0 && box.right <= innerWidth};
    })""")
    assert thumbnails == [{"name": "square.jpg", "width": 384, "shown": True},
                          {"name": "garden.jpg", "width": 384, "shown": True}]  # fmt: skip
    name = "square.jpg" if page.viewport_size["width"] < 600 else "garden.jpg"
    with page.expect_response(lambda response: response.url.endswith("/relight")) as answer:
        page.click(f"button[data-example='{name}']")
    page.wait_for_selector("#download", state="visible", timeout=60_000)
    assert answer.value.status == 200
    weights = httpx.get(server.url + "/readyz").json()["weights"]
    assert answer.value.headers["relight-weights"] == weights
    file_name, digest = weights.rsplit(" ", 1)
    assert page.inner_text("#weights") == f"Made by {file_name} ({digest})."
    assert f"Relit {name} in" in page.inner_text("#status")
    assert page.evaluate("['after', 'before'].map((id) => document.getElementById(id).naturalWidth)") == [384, 384]
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]

    # What the page shows is what the service answers for the example's own bytes, sent as an upload.
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "saved.jpg"
    download.value.save_as(saved)
    example = httpx.get(f"{server.url}/examples/{name}").content
    direct = httpx.post(server.url + "/relight", files={"image": (name, example)}, timeout=60)
    assert np.array_equal(np.asarray(Image.open(saved)), np.asarray(Image.open(io.BytesIO(direct.content))))
    assert not np.array_equal(np.asarray(Image.open(saved)), np.asarray(Image.open(io.BytesIO(example))))
