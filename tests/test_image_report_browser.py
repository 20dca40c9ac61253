"""The image report in a real browser: Debian's chromium, driven by Selenium.

The report is built from real images (scikit-learn's digits) with no model: fresh real digits
with a little pixel noise stand in for a synthesiser's, labelled by class name, with two exact
copies of training digits planted among them (report_pages.py). The page must load offline
without a console error; the verdict and FID next to its real baseline must be visible; the
sample thumbnails must sit in a regular grid, each over its own class label; and the planted
copies must be withheld in cells the same size as the thumbnails. Each run saves screenshots
under out/report-screenshots/ (image-*.png). Without chromium and chromium-driver installed the
tests skip.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from report_pages import (
    DIGIT_NAMES,
    N_IMAGE_COPIES,
    SHOTS,
    Page,
    image_report,
    noisy_digits,
    open_report,
    remote_fetches,
    severe,
    shot,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from evaluation.images import ImageEvaluation
from evaluation.images.report import GRID_COLUMNS, N_GRID, fid_html


class Report(NamedTuple):
    page: Path
    evaluation: ImageEvaluation
    labels: list[str]
    """Each synthetic image's class name."""


@pytest.fixture(scope="module")
def report(browser: WebDriver, tmp_path_factory: pytest.TempPathFactory) -> Report:
    page, evaluation, digits, _ = image_report(tmp_path_factory.mktemp("image-report"))
    _, labels, _ = noisy_digits(digits)
    return Report(page, evaluation, [DIGIT_NAMES[int(v)] for v in labels])


@pytest.fixture(scope="module")
def loaded(browser: WebDriver, report: Report) -> Page:
    console = open_report(browser, report.page)
    shot(browser, "image-00-full-page.png")
    return Page(browser, console)


@pytest.fixture
def page(loaded: Page) -> WebDriver:
    return loaded.driver


def _rect(element: Any) -> dict[str, float]:
    return element.rect  # x, y, width, height in CSS pixels, relative to the page


def _cells(page: WebDriver, section: str) -> list[Any]:
    return page.find_elements(By.CSS_SELECTOR, f"#{section} .tiles > figure")


def test_loads_offline_without_console_errors(loaded: Page) -> None:
    assert severe(loaded.console) == []
    assert remote_fetches(loaded.driver) == []


def test_verdict_and_fid_next_to_its_baseline_are_visible(page: WebDriver, report: Report) -> None:
    page.execute_script("window.scrollTo(0, 0);")
    verdict = page.find_element(By.ID, "verdict")
    assert verdict.is_displayed()
    banner = verdict.find_element(By.CSS_SELECTOR, ".banner")
    assert banner.is_displayed() and banner.text.startswith("GATE ")
    # the banner is at the top of the page, in the first screenful
    assert _rect(banner)["y"] < page.execute_script("return innerHeight;")
    fid = page.find_element(By.ID, "fid")
    assert fid.is_displayed()
    m = report.evaluation.metrics
    assert m["fid_real_baseline"] is not None and m["fid_real_baseline"] > 0
    found = re.fullmatch(r"FID ([\d.]+) \(real holdout vs real train: ([\d.]+)\)", fid.text)
    assert found, fid.text
    assert float(found[1]) == pytest.approx(m["fid"], rel=0.01, abs=0.01)
    assert float(found[2]) == pytest.approx(m["fid_real_baseline"], rel=0.01, abs=0.01)
    assert fid.text in re.sub(r"<[^>]+>", "", fid_html(m))
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.save_screenshot(str(SHOTS / "image-01-top.png"))
    shot(page, "image-02-verdict.png", verdict)


def test_thumbnails_sit_in_a_regular_grid_over_their_labels(
    page: WebDriver, report: Report
) -> None:
    cells = _cells(page, "samples")
    assert len(cells) == N_GRID
    rects = [_rect(c) for c in cells]
    assert {(r["width"], r["height"]) for r in rects} == {(rects[0]["width"], rects[0]["height"])}
    xs = sorted({round(r["x"]) for r in rects})
    ys = sorted({round(r["y"]) for r in rects})
    assert len(xs) == GRID_COLUMNS and len(ys) == N_GRID // GRID_COLUMNS
    steps = {b - a for a, b in zip(xs, xs[1:], strict=False)}
    assert len(steps) == 1 and steps.pop() >= rects[0]["width"]  # even columns, no overlap
    for cell in cells:
        image = cell.find_element(By.CSS_SELECTOR, "img, .withheld")  # a planted copy: withheld
        label = cell.find_element(By.CSS_SELECTOR, "figcaption .label")
        assert image.is_displayed() and label.is_displayed()
        box, img, lab = _rect(cell), _rect(image), _rect(label)
        assert img["width"] == img["height"] == 64
        assert lab["y"] >= img["y"] + img["height"]  # under the thumbnail, not over it
        assert lab["y"] + lab["height"] <= box["y"] + box["height"] + 0.5  # inside its cell
        assert page.execute_script(
            "return arguments[0].scrollWidth <= arguments[0].clientWidth;", label
        )  # the whole label shows
        where = cell.find_element(By.CSS_SELECTOR, "figcaption span:not(.label)").text
        index = int(re.fullmatch(r"#(\d+) d=[\d.]+", where)[1])
        assert label.text == report.labels[index]
    assert {c.find_element(By.CSS_SELECTOR, ".label").text for c in cells} <= set(DIGIT_NAMES)
    samples = page.find_element(By.ID, "samples")
    page.execute_script("arguments[0].scrollIntoView(true);", samples)
    shot(page, "image-03-samples.png", samples)


def test_planted_copies_are_withheld_in_cells_like_the_others(
    page: WebDriver, report: Report
) -> None:
    cells = _cells(page, "closest")
    withheld = [c for c in cells if c.find_elements(By.CSS_SELECTOR, ".withheld")]
    assert len(withheld) == N_IMAGE_COPIES
    assert set(report.evaluation.privacy.closest_synthetic[:N_IMAGE_COPIES]) == set(
        np.arange(N_IMAGE_COPIES).tolist()
    )
    sizes = {(_rect(c)["width"], _rect(c)["height"]) for c in cells + _cells(page, "samples")}
    assert len(sizes) == 1
    for cell in withheld:
        box = _rect(cell.find_element(By.CSS_SELECTOR, ".withheld"))
        assert box["width"] == box["height"] == 64
        assert "near duplicate" in cell.text
    closest = page.find_element(By.ID, "closest")
    page.execute_script("arguments[0].scrollIntoView(true);", closest)
    shot(page, "image-04-closest.png", closest)
