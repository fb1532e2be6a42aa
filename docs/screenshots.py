"""Retake docs/web_page.png and docs/web_page_phone.png from a running service, so that they show its weights.

    RELIGHT_WEIGHTS=weights/stacked_dmshn.safetensors relight-serve &      # wait for /readyz
    python docs/screenshots.py http://127.0.0.1:8000

Playwright drives Debian's chromium (as tests/test_page.py does): the page at 1280x800 and at a phone's
390x844, the town-square example relit, the slider in the middle, the whole page captured (PNG).
"""

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).parent
VIEWS = {"web_page.png": (1280, 800), "web_page_phone.png": (390, 844)}  # CSS pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the service's base URL")
    parser.add_argument("--example", default="square.jpg", help="which built-in example to relight")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("error: Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for name, (width, height) in VIEWS.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(args.url.rstrip("/") + "/")
            page.click(f"button[data-example='{args.example}']")
            page.wait_for_selector("#weights:not([hidden])", timeout=300_000)
            page.screenshot(path=DOCS / name, full_page=True)
            print(f"{DOCS / name}: {page.locator('#weights').inner_text()}")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
