"""Regenerate the report screenshots in docs/img/ (the README's "Reading the report").

    .venv/bin/python docs/make_screenshots.py

Builds the table and the image report the way the browser tests do (tests/report_pages.py):
from real package data with no model trained (Telco churn rows with a planted rule break;
scikit-learn digits with a little noise and two planted copies of training images), opens each
in Debian's headless chromium (`apt-get install chromium chromium-driver`) at a 1280-pixel-wide
window, and writes two PNGs per report:

* table-report-1.png: the top of the page (the verdict); table-report-2.png: worst first;
* image-report-1.png: the top of the page (verdict, FID and its real baseline);
  image-report-2.png: the labelled thumbnail grid.

Each PNG is cut to at most MAX_HEIGHT pixels and reduced to a 256-colour palette to stay small.
Takes about a minute on a laptop CPU.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from PIL import Image  # noqa: E402
from report_pages import (  # noqa: E402
    have_chromium,
    image_report,
    open_report,
    screenshot,
    severe,
    start_chromium,
    table_report,
)
from selenium.webdriver.common.by import By  # noqa: E402

OUT = ROOT / "docs" / "img"
WIDTH, HEIGHT = 1280, 800
MAX_HEIGHT = 900


def _save(png: Path, target: Path) -> None:
    """`png`, cut to MAX_HEIGHT and reduced to a palette, as `target`."""
    image = Image.open(png).convert("RGB")
    image = image.crop((0, 0, image.width, min(image.height, MAX_HEIGHT)))
    buffer = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        buffer, format="PNG", optimize=True
    )
    target.write_bytes(buffer.getvalue())
    print(f"{target.relative_to(ROOT)}: {image.width}x{image.height}, {len(buffer.getvalue()):,} B")


def _shoot(driver, page: Path, name: str, section: str, work: Path) -> None:  # noqa: ANN001
    console = open_report(driver, page)
    if severe(console):
        raise SystemExit(f"{name}: console errors: {severe(console)}")
    driver.execute_script("window.scrollTo(0, 0);")
    top = work / f"{name}-1.png"
    driver.save_screenshot(str(top))
    _save(top, OUT / f"{name}-1.png")
    element = driver.find_element(By.ID, section)
    driver.execute_script("arguments[0].scrollIntoView(true);", element)
    part = work / f"{name}-2.png"
    screenshot(driver, part, element, pad=12)
    _save(part, OUT / f"{name}-2.png")


def main() -> None:
    if not have_chromium():
        raise SystemExit("needs /usr/bin/chromium and /usr/bin/chromedriver")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        table_page = table_report(work / "table")[0]
        image_page = image_report(work / "image")[0]
        driver = start_chromium(WIDTH, HEIGHT)
        try:  # the window's frame takes some of its height: make the page itself WIDTH x HEIGHT
            inner = driver.execute_script("return [innerWidth, innerHeight];")
            driver.set_window_size(2 * WIDTH - inner[0], 2 * HEIGHT - inner[1])
            _shoot(driver, table_page, "table-report", "worst-first", work)
            _shoot(driver, image_page, "image-report", "samples", work)
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
