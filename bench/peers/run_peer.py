"""Fit one peer synthesizer on a prepared training table and sample from it (bench_tables.py).

Runs under the peer's own virtual environment (/work/venvs/<venv>/bin/python), never with this
repository's code: it imports only the peer library, pandas, pyarrow, numpy and the standard
library.

    /work/venvs/sdv/bin/python bench/peers/run_peer.py --peer tvae \\
        --train work/train.parquet --meta work/meta.json --rows 4930 \\
        --out work/tvae.parquet --result work/tvae.json [--epochs N] [--max-minutes M]
        [--seed S] [--threads T]

`--meta` is a JSON object: {"target": name or null, "columns": {name: "numeric" | "categorical"
| "datetime"}}; every column of the training table is modelled and appears in it. Datetime
columns are parsed with `pd.to_datetime` (in UTC, made naive) before fitting and come back as
naive datetime64.

Peers and their defaults (the libraries' own, except where a budget is needed):

* `gaussian_copula`, `tvae`, `ctgan` (venv `sdv`): SDV's single-table synthesizers with
  metadata whose sdtypes follow `--meta` (no keys). TVAE and CTGAN train SDV's default 300
  epochs; `--epochs` overrides that (for smoke runs). The Gaussian copula has no epochs.
* `mostlyai` (venv `mostlyai`): mostlyai-engine's `TabularARGN` at its defaults (trains until
  the validation loss stops improving, at most 100 epochs; value protection on), encoding types
  from `--meta` (TABULAR_NUMERIC_AUTO / TABULAR_CATEGORICAL / TABULAR_DATETIME), with
  `max_training_time` = `--max-minutes` (default 60) and `max_epochs` = `--epochs` if given.
* `forestdiffusion` (venv `forestdiffusion`): `ForestDiffusionModel` (ForestFlow, XGBoost) with
  n_t=20 noise levels and duplicate_K=2 (the library's 50 / 100 do not fit a CPU budget on 2
  cores), other arguments at their defaults; `--epochs` sets n_t instead when given.
  Categoricals become integer codes (missing is a code of its own): two-level ones are passed
  as `bin_indexes`, others as `cat_indexes`; integer columns as `int_indexes`; datetimes as
  seconds. The library's one-hot decoding matches dummy columns by substring ("1_" also matches
  column 11's dummies), so `clean_onehot_data` is overridden by an exact-prefix match; that is
  the library's intended decoding, not a change of the model. joblib runs `--threads` workers
  of one XGBoost thread each. Missing numbers are left to XGBoost; the samples have none.

Torch uses `--threads` (default 2) threads. The Parquet output is written to a temporary name
and renamed. The result JSON holds fit_seconds, sample_seconds, rows_per_second,
peak_rss_mib (ru_maxrss of this process), children_peak_rss_mib (the largest child's, e.g.
joblib workers), the peer's version, and the settings used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PEERS = ("gaussian_copula", "tvae", "ctgan", "mostlyai", "forestdiffusion")
PACKAGES = {
    "gaussian_copula": "sdv",
    "tvae": "sdv",
    "ctgan": "sdv",
    "mostlyai": "mostlyai-engine",
    "forestdiffusion": "ForestDiffusion",
}
FD_NOISE_LEVELS = 20
FD_DUPLICATES = 2
DEFAULT_MAX_MINUTES = 60.0


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def _seed_everything(seed: int) -> None:
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def _set_threads(threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


# ---- SDV ----------------------------------------------------------------------------------
class SDVPeer:
    def __init__(self, name: str, kinds: dict[str, str], args: argparse.Namespace):
        self.name, self.kinds, self.args = name, kinds, args
        self.settings: dict[str, Any] = {}

    def fit(self, train: pd.DataFrame) -> None:
        import sdv
        from sdv.metadata import Metadata
        from sdv.single_table import (
            CTGANSynthesizer,
            GaussianCopulaSynthesizer,
            TVAESynthesizer,
        )

        self.table = "table"
        self.v2 = int(sdv.__version__.split(".")[0]) >= 2
        if hasattr(Metadata, "detect_from_dataframe"):  # SDV 1.x
            md = Metadata.detect_from_dataframe(data=train, table_name=self.table)
        else:  # SDV 2.x
            md = Metadata.detect_from_dataframes({self.table: train})
        sdtypes = {"numeric": "numerical", "categorical": "categorical", "datetime": "datetime"}
        for col, kind in self.kinds.items():
            md.update_column(col, table_name=self.table, sdtype=sdtypes[kind])
        if md.to_dict()["tables"][self.table].get("primary_key"):
            md.remove_primary_key(table_name=self.table)
        md.validate()
        kwargs: dict[str, Any] = {}
        if self.name in ("tvae", "ctgan") and self.args.epochs:
            kwargs["epochs"] = self.args.epochs
        cls = {
            "gaussian_copula": GaussianCopulaSynthesizer,
            "tvae": TVAESynthesizer,
            "ctgan": CTGANSynthesizer,
        }[self.name]
        self.model = cls(md, **kwargs)
        self.settings = {
            "epochs": kwargs.get("epochs", 300 if self.name != "gaussian_copula" else None),
            "defaults": not kwargs,
        }
        self.model.fit({self.table: train} if self.v2 else train)

    def sample(self, n: int) -> pd.DataFrame:
        out = self.model.sample(num_rows=n)
        return out[self.table] if isinstance(out, dict) else out


# ---- mostlyai-engine ------------------------------------------------------------------------
class MostlyPeer:
    ENCODING = {
        "numeric": "TABULAR_NUMERIC_AUTO",
        "categorical": "TABULAR_CATEGORICAL",
        "datetime": "TABULAR_DATETIME",
    }

    def __init__(self, name: str, kinds: dict[str, str], args: argparse.Namespace):
        self.kinds, self.args = kinds, args
        self.workspace = tempfile.TemporaryDirectory(prefix="mostlyai-ws-")

    def fit(self, train: pd.DataFrame) -> None:
        from mostlyai.engine import TabularARGN

        kwargs: dict[str, Any] = {
            "max_training_time": self.args.max_minutes,
            "tgt_encoding_types": {c: self.ENCODING[k] for c, k in self.kinds.items()},
            "device": "cpu",
            "workspace_dir": self.workspace.name,
            "random_state": self.args.seed,
            "verbose": 0,
        }
        if self.args.epochs:
            kwargs["max_epochs"] = self.args.epochs
        if self.args.dp_epsilon is not None:  # bench_dp.py: its Opacus DP at the same budget
            from mostlyai.engine.domain import DifferentialPrivacyConfig

            kwargs["differential_privacy"] = DifferentialPrivacyConfig(
                max_epsilon=self.args.dp_epsilon,
                delta=2e-5,
                value_protection_epsilon=0.1 * self.args.dp_epsilon,
            )
        self.settings = {
            "max_training_time_min": self.args.max_minutes,
            "max_epochs": self.args.epochs or 100,
            "differential_privacy": (
                kwargs["differential_privacy"].model_dump() if self.args.dp_epsilon else None
            ),
        }
        self.model = TabularARGN(**kwargs)
        self.model.fit(train)

    def sample(self, n: int) -> pd.DataFrame:
        return self.model.sample(n_samples=n)


# ---- ForestDiffusion ------------------------------------------------------------------------
def _forest_class():
    from ForestDiffusion import ForestDiffusionModel

    class ExactPrefixForestDiffusion(ForestDiffusionModel):
        """The library's one-hot decoding, with dummies matched by exact prefix: upstream tests
        `prefix + "_" in name`, so column 1 also claims column 11's dummies."""

        def clean_onehot_data(self, X):
            if len(self.cat_indexes) == 0:
                return X
            names = list(self.X_names_after)
            new_names = list(names)
            prefixes = sorted({n.split("_", 1)[0] for n in names if "_" in n})
            for prefix in prefixes:
                idx = np.flatnonzero([n.split("_", 1)[0] == prefix and "_" in n for n in names])
                block = np.concatenate((np.full((X.shape[0], 1), 0.5), X[:, idx]), axis=1)
                X[:, idx[0]] = np.argmax(block, axis=1)
                new_names[idx[0]] = prefix
            df = pd.DataFrame(X, columns=new_names)
            return df[list(self.X_names_before)].to_numpy()

    return ExactPrefixForestDiffusion


class ForestPeer:
    def __init__(self, name: str, kinds: dict[str, str], args: argparse.Namespace):
        self.kinds, self.args = kinds, args

    def fit(self, train: pd.DataFrame) -> None:
        self.columns = list(train.columns)
        self.levels: dict[str, list] = {}
        self.dtypes = train.dtypes.to_dict()
        X = np.empty((len(train), len(self.columns)), dtype=float)
        bin_idx, cat_idx, int_idx = [], [], []
        for j, col in enumerate(self.columns):
            kind, s = self.kinds[col], train[col]
            if kind == "categorical":
                levels = list(pd.unique(s.dropna()))
                codes = pd.Categorical(s, categories=levels).codes.astype(float)
                if s.isna().any():  # missing is a level of its own
                    codes[codes < 0] = len(levels)
                    levels.append(None)
                self.levels[col] = levels
                X[:, j] = codes
                (bin_idx if len(levels) <= 2 else cat_idx).append(j)
            elif kind == "datetime":
                X[:, j] = (s - pd.Timestamp(0)).dt.total_seconds().to_numpy(dtype=float)
            else:
                X[:, j] = pd.to_numeric(s, errors="coerce").astype(float)
                if pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
                    int_idx.append(j)
        n_t = self.args.epochs or FD_NOISE_LEVELS
        self.settings = {
            "n_t": n_t,
            "duplicate_K": FD_DUPLICATES,
            "n_jobs": self.args.threads,
            "xgboost_nthread": 1,
            "bin_indexes": len(bin_idx),
            "cat_indexes": len(cat_idx),
            "int_indexes": len(int_idx),
        }
        self.model = _forest_class()(
            X,
            n_t=n_t,
            duplicate_K=FD_DUPLICATES,
            bin_indexes=bin_idx,
            cat_indexes=cat_idx,
            int_indexes=int_idx,
            n_jobs=self.args.threads,
            seed=self.args.seed,
            nthread=1,
        )

    def sample(self, n: int) -> pd.DataFrame:
        X = self.model.generate(batch_size=n)
        try:  # end joblib's workers so that RUSAGE_CHILDREN counts their memory and CPU time
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)
        except Exception:  # noqa: BLE001 - accounting only
            pass
        out = {}
        for j, col in enumerate(self.columns):
            kind, v = self.kinds[col], X[:, j]
            if kind == "categorical":
                levels = self.levels[col]
                codes = np.clip(np.rint(v), 0, len(levels) - 1).astype(int)
                out[col] = pd.Series([levels[c] for c in codes], dtype=object)
            elif kind == "datetime":
                out[col] = pd.Timestamp(0) + pd.to_timedelta(np.round(v), unit="s")
            else:
                s = pd.Series(v)
                if pd.api.types.is_integer_dtype(self.dtypes[col]):
                    s = s.round().astype("int64")
                out[col] = s
        return pd.DataFrame(out)


# ---- main -----------------------------------------------------------------------------------
def make_peer(name: str, kinds: dict[str, str], args: argparse.Namespace):
    if name in ("gaussian_copula", "tvae", "ctgan"):
        return SDVPeer(name, kinds, args)
    if name == "mostlyai":
        return MostlyPeer(name, kinds, args)
    return ForestPeer(name, kinds, args)


def write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--peer", required=True, choices=PEERS)
    p.add_argument("--train", required=True, type=Path)
    p.add_argument("--meta", required=True, type=Path)
    p.add_argument("--rows", required=True, type=int)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--result", required=True, type=Path)
    p.add_argument("--epochs", type=int, default=None, help="TVAE/CTGAN epochs, mostlyai "
                   "max_epochs, forestdiffusion n_t; default: the peer's (see above)")  # fmt: skip
    p.add_argument("--max-minutes", type=float, default=DEFAULT_MAX_MINUTES,
                   help="mostlyai max_training_time (minutes)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dp-epsilon", type=float, default=None,
                   help="mostlyai: train with differential privacy at this total epsilon "
                   "(a tenth to value protection, training stopped at the total)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    warnings.simplefilter("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    _set_threads(args.threads)
    _seed_everything(args.seed)

    meta = json.loads(args.meta.read_text())
    kinds: dict[str, str] = meta["columns"]
    train = pd.read_parquet(args.train)
    missing = sorted(set(kinds) ^ set(train.columns))
    if missing:
        raise SystemExit(f"--meta and the training table disagree on columns: {missing}")
    for col, kind in kinds.items():
        if kind == "datetime":
            # text with a UTC offset ("2013-01-01T05:00:00Z") becomes naive UTC
            train[col] = pd.to_datetime(train[col], errors="coerce", utc=True).dt.tz_localize(None)

    peer = make_peer(args.peer, kinds, args)
    t0 = time.perf_counter()
    peer.fit(train)
    fit_s = time.perf_counter() - t0
    print(f"{args.peer}: fit on {len(train):,} rows in {fit_s:.1f} s", flush=True)

    t0 = time.perf_counter()
    synthetic = peer.sample(args.rows)
    sample_s = time.perf_counter() - t0
    print(f"{args.peer}: sampled {len(synthetic):,} rows in {sample_s:.1f} s", flush=True)
    synthetic = synthetic[[c for c in train.columns if c in synthetic.columns]]
    write_atomic(args.out, lambda tmp: synthetic.to_parquet(tmp, index=False))

    self_mib = _peak_rss_mib(resource.RUSAGE_SELF)
    children_mib = _peak_rss_mib(resource.RUSAGE_CHILDREN)
    result = {
        "peer": args.peer,
        "package": PACKAGES[args.peer],
        "version": _version(PACKAGES[args.peer]),
        "versions": {p: _version(p) for p in ("torch", "pandas", "numpy", "xgboost")},
        "python": platform.python_version(),
        "settings": getattr(peer, "settings", {}),
        "seed": args.seed,
        "threads": args.threads,
        "train_rows": len(train),
        "rows": len(synthetic),
        "fit_seconds": fit_s,
        "sample_seconds": sample_s,
        "rows_per_second": len(synthetic) / max(sample_s, 1e-9),
        "peak_rss_mib": self_mib,
        "children_peak_rss_mib": children_mib,
        "cpu_seconds": sum(
            getattr(resource.getrusage(w), f)
            for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
            for f in ("ru_utime", "ru_stime")
        ),
    }
    write_atomic(args.result, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
