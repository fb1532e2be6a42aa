"""The web page in a real browser: Playwright driving Debian's chromium against the real service."""

import shutil

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.images import encode, scene
from tests.server import running_server

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


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
