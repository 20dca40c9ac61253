"""Train/holdout split by row index. Only indices and a data hash are ever saved, so real
rows are never copied into work directories or orchestration results."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from synth.atomic import atomic_write_text
from synth.errors import InputDataError

SPLIT_FORMAT_VERSION = 1


def _holdout_size(n_rows: int, holdout_fraction: float) -> int:
    # The epsilon keeps 0.3 * 10 (= 3.0000000000000004) from rounding up to 4.
    return math.ceil(n_rows * holdout_fraction - 1e-9)


def _fits(n_rows: int, holdout_fraction: float, min_train: int, min_holdout: int) -> bool:
    n_holdout = _holdout_size(n_rows, holdout_fraction)
    return n_holdout >= min_holdout and n_rows - n_holdout >= min_train


def min_rows_for_split(holdout_fraction: float, min_train_rows: int, min_holdout_rows: int) -> int:
    """Smallest table for which both sides of the split reach their minimum."""
    n = max(
        min_train_rows + min_holdout_rows,
        int(min_holdout_rows / holdout_fraction) - 2,
        int(min_train_rows / (1 - holdout_fraction)) - 2,
    )
    while not _fits(n, holdout_fraction, min_train_rows, min_holdout_rows):
        n += 1
    return n


def _strata(stratify: np.ndarray, n_rows: int, n_holdout: int) -> np.ndarray | None:
    """Integer class codes, or None when stratifying is impossible (a class of one row...)."""
    labels = pd.Series(np.asarray(stratify, dtype=object))
    if len(labels) != n_rows:
        raise ValueError(f"stratify has {len(labels)} labels for {n_rows} rows")
    codes, uniques = pd.factorize(labels, use_na_sentinel=False)
    counts = np.bincount(codes)
    n_classes = len(uniques)
    if counts.min() < 2 or n_holdout < n_classes or n_rows - n_holdout < n_classes:
        return None
    return codes


def split_indices(
    n_rows: int,
    holdout_fraction: float,
    seed: int,
    *,
    stratify: np.ndarray | None = None,
    min_train_rows: int = 50,
    min_holdout_rows: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, disjoint, covering (train, holdout) row positions, each sorted ascending.

    Stratified on `stratify` labels when every class has at least two rows; otherwise a plain
    shuffled split (a rare class cannot be put on both sides).
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if not _fits(n_rows, holdout_fraction, min_train_rows, min_holdout_rows):
        need = min_rows_for_split(holdout_fraction, min_train_rows, min_holdout_rows)
        raise InputDataError(
            f"the table has {n_rows} rows; the split needs at least {need} (train >= "
            f"{min_train_rows}, holdout >= {min_holdout_rows} at holdout_fraction="
            f"{holdout_fraction}): add rows, or lower split.min_train_rows / "
            "split.min_holdout_rows"
        )
    n_holdout = _holdout_size(n_rows, holdout_fraction)
    codes = None if stratify is None else _strata(stratify, n_rows, n_holdout)
    train, holdout = train_test_split(
        np.arange(n_rows, dtype=np.int64),
        test_size=n_holdout,
        random_state=seed % 2**32,
        shuffle=True,
        stratify=codes,
    )
    return np.sort(train), np.sort(holdout)


def unit_codes(units: np.ndarray | pd.Series) -> np.ndarray:
    """Integer codes, one per person, for each record's unit value (the values themselves are
    never kept). A missing unit is refused by the caller, which names the row."""
    codes, _ = pd.factorize(pd.Series(np.asarray(units, dtype=object)), use_na_sentinel=True)
    return codes.astype(np.int64)


def split_units(
    units: np.ndarray,
    holdout_fraction: float,
    seed: int,
    *,
    stratify: np.ndarray | None = None,
    min_train_rows: int = 50,
    min_holdout_rows: int = 20,
    unit_name: str = "unit",
) -> tuple[np.ndarray, np.ndarray]:
    """`split_indices` over people instead of records: each unit code in `units` (one per
    record, see `unit_codes`) falls wholly on one side, so a person's other records can never
    make the holdout look fresh. `holdout_fraction` is a share of the people; the row
    minimums still hold. Stratified on each person's first record's label when possible."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    units = np.asarray(units, dtype=np.int64)
    n_units = int(units.max()) + 1 if len(units) else 0
    n_holdout = min(max(_holdout_size(n_units, holdout_fraction), 1), n_units - 1)
    if n_units < 2:
        raise InputDataError(
            f"every record belongs to one {unit_name}: a split by person needs at least two; "
            "check privacy.unit"
        )
    _, first = np.unique(units, return_index=True)
    codes = None if stratify is None else _strata(np.asarray(stratify)[first], n_units, n_holdout)
    train_units, _ = train_test_split(
        np.arange(n_units),
        test_size=n_holdout,
        random_state=seed % 2**32,
        shuffle=True,
        stratify=codes,
    )
    in_train = np.isin(units, train_units)
    train, holdout = np.flatnonzero(in_train), np.flatnonzero(~in_train)
    if len(train) < min_train_rows or len(holdout) < min_holdout_rows:
        raise InputDataError(
            f"split by {unit_name} ({n_units} people): train has {len(train)} records and "
            f"holdout {len(holdout)}; they need at least {min_train_rows} and "
            f"{min_holdout_rows}: add people, change split.holdout_fraction, or lower "
            "split.min_train_rows / split.min_holdout_rows"
        )
    return train.astype(np.int64), holdout.astype(np.int64)


def split_records(
    n_records: int,
    holdout_fraction: float,
    seed: int,
    *,
    units: np.ndarray | None = None,
    stratify: np.ndarray | None = None,
    min_train_rows: int = 50,
    min_holdout_rows: int = 20,
    unit_name: str = "unit",
) -> tuple[np.ndarray, np.ndarray]:
    """The job's split: by person (`split_units`) when records have `units`, by record
    (`split_indices`) when each record is its own person."""
    sizes = {"min_train_rows": min_train_rows, "min_holdout_rows": min_holdout_rows}
    if units is None:
        return split_indices(n_records, holdout_fraction, seed, stratify=stratify, **sizes)
    return split_units(
        units, holdout_fraction, seed, stratify=stratify, unit_name=unit_name, **sizes
    )


def save_split(
    path: str | os.PathLike[str],
    train_idx: np.ndarray,
    holdout_idx: np.ndarray,
    data_hash: str,
) -> Path:
    """Store the split as JSON: indices and the hash of the data they index, nothing else."""
    payload = {
        "version": SPLIT_FORMAT_VERSION,
        "data_hash": data_hash,
        "train": [int(i) for i in train_idx],
        "holdout": [int(i) for i in holdout_idx],
    }
    return atomic_write_text(path, json.dumps(payload, separators=(",", ":")))


def load_split(path: str | os.PathLike[str], data_hash: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a saved split; refuse it if it was made for different data."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        saved_hash = payload["data_hash"]
        train = np.asarray(payload["train"], dtype=np.int64)
        holdout = np.asarray(payload["holdout"], dtype=np.int64)
    except FileNotFoundError:
        raise InputDataError(
            f"split file {str(path)!r} does not exist: run the split step first"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputDataError(
            f"split file {str(path)!r} is unreadable ({type(err).__name__}): delete it so the "
            "split is made again"
        ) from None
    if saved_hash != data_hash:
        raise InputDataError(
            f"split file {str(path)!r} was made for different data (hash {saved_hash[:12]}..., "
            f"this data {data_hash[:12]}...): delete it so the split is made again"
        )
    return train, holdout
