"""The table report in a real browser: Debian's chromium, driven by Selenium.

The report is built from real rows (Telco churn) with no model: fresh real rows stand in for a
synthesiser's, with a rule break planted in them (customers without internet service whose
`online_security` says "No" instead of "No internet service"). The page must load offline
without a console error; the verdict, the worst-first section, the per-column table and the
interactive plots must be visible; the table must sort on a click; a plot must answer a hover;
and the planted break must head the worst-first section's rules. Each run saves screenshots
under out/report-screenshots/.

The report and the browser come from report_pages.py (shared with the image report's test
and docs/make_screenshots.py). Selenium is pointed at the system's chromium and chromedriver by
path, so its driver manager downloads nothing. Without them installed (`apt-get install
chromium chromium-driver`, as .ci/run does) the tests skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from report_pages import (
    SHOTS,
    WAIT_S,
    Page,
    open_report,
    remote_fetches,
    severe,
    shot,
    table_report,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from evaluation.table import TableEvaluation

PLANTED_RULE = "internet_service -> online_security"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TableEvaluation, int]:
    return table_report(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def loaded(browser: WebDriver, report: tuple[Path, TableEvaluation, int]) -> Page:
    """The report, opened once, with every plot drawn."""
    console = open_report(browser, report[0])
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "01-top.png"))
    shot(browser, "00-full-page.png")
    return Page(browser, console)


@pytest.fixture
def page(loaded: Page) -> WebDriver:
    return loaded.driver


def test_loads_offline_without_console_errors(loaded: Page) -> None:
    assert severe(loaded.console) == []
    assert remote_fetches(loaded.driver) == []


def test_verdict_worst_first_table_and_plots_are_visible(page: WebDriver) -> None:
    verdict = page.find_element(By.ID, "verdict")
    assert verdict.is_displayed() and "Privacy verdict" in verdict.text
    assert "evidence, not proof" in verdict.text
    worst = page.find_element(By.ID, "worst-first")
    assert worst.is_displayed() and "Worst columns" in worst.text
    assert "Worst column pairs" in worst.text
    table = page.find_element(By.CSS_SELECTOR, "#columns table.sortable")
    assert table.is_displayed() and len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 20
    plots = page.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")
    assert len(plots) == 20 + 2  # the columns, the associations, the distances
    assert any(p.is_displayed() for p in plots)
    shot(page, "02-verdict.png", verdict)
    shot(page, "03-worst-first.png", worst)
    shot(page, "04-per-column-table.png", table)
    shot(page, "06-associations.png", page.find_element(By.ID, "associations"))


def test_a_plot_answers_a_hover(page: WebDriver) -> None:
    cell = page.find_element(By.ID, "column-0")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'});", cell)
    bar = cell.find_element(By.CSS_SELECTOR, ".bars path")
    ActionChains(page).move_to_element(bar).perform()
    hover = WebDriverWait(page, WAIT_S).until(
        lambda d: cell.find_elements(By.CSS_SELECTOR, ".hoverlayer .hovertext")
    )
    assert "of rows" in hover[0].text
    shot(page, "05-hover.png", cell)


def _column(page: WebDriver, index: int) -> list[str]:
    rows = page.find_elements(By.CSS_SELECTOR, "#columns tbody tr")
    return [r.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-sort") for r in rows]


def test_the_per_column_table_sorts_on_a_click(page: WebDriver) -> None:
    heads = page.find_elements(By.CSS_SELECTOR, "#columns thead th")
    names = [h.text for h in heads]
    by_name, by_score = names.index("column"), names.index("shape score")
    page.execute_script("arguments[0].scrollIntoView(true);", heads[0])
    heads[by_name].click()
    assert _column(page, by_name) == sorted(_column(page, by_name))
    assert heads[by_name].get_attribute("aria-sort") == "ascending"
    heads[by_score].click()
    heads[by_score].click()  # the second click reverses
    scores = [float(s) for s in _column(page, by_score)]
    assert scores == sorted(scores, reverse=True)
    assert heads[by_score].get_attribute("aria-sort") == "descending"


def test_a_planted_rule_break_heads_the_worst_first_section(
    page: WebDriver, report: tuple[Path, TableEvaluation, int]
) -> None:
    _, evaluation, n_broken = report
    worst = page.find_element(By.ID, "worst-first")
    assert "rule_break_excess" in worst.text  # a failed check, first
    first = worst.find_element(By.CSS_SELECTOR, "table.rules tbody tr")
    assert first.is_displayed()
    cells = [td.text for td in first.find_elements(By.TAG_NAME, "td")]
    rules = [g.rule for g in evaluation.rules.groups if g.synthetic_breaks == n_broken]
    assert PLANTED_RULE in rules and cells[0] in rules
    assert cells[2].startswith(f"{n_broken} (") and cells[3].startswith("0 (")
    table = worst.find_element(By.CSS_SELECTOR, "table.rules")
    assert PLANTED_RULE in table.text
    shot(page, "07-rule-breaks.png", table)
