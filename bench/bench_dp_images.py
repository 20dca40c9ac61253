"""Differential privacy on the digits demo (issue 12): CAS ratio and FID at epsilon 10 and 1,
beside the same model without DP.

    python bench/bench_dp_images.py [--epsilons 10,1,inf] [--steps 300] [--batch 256]
        [--channels 16,32,32] [--multiplicity 4] [--lr 2e-3] [--audit] [--quick]

The pixels and split are the demo's (`bench_gpu.digits_16`: scikit-learn's digits, 8x8 scaled
to 16x16; 1,257 train and 540 holdout images, one image per person). Each run fits
`ImageDiffusionSynthesizer` (class-conditional, v-prediction), samples as many images as the
training split with 20 DPM-Solver steps, and scores them with the project's image evaluation
(`evaluate_images`: FID in the project's feature space, CAS on the real holdout, the privacy
checks). The ten class names are declared public (`source.images.classes`): under DP only
their counts are estimated privately, with a tenth of epsilon. (Undeclared, at epsilon 1 that
tenth cannot tell a class of about 125 images from noise, and the fit stops with the fix.)

DP-SGD materialises per-example gradients of the UNet (Opacus has no ghost norms for
convolutions), so a step costs about `multiplicity` plain backward passes of the batch: the DP
runs use a smaller UNet and a few hundred steps to fit a CPU. `--quick` is a smoke run.

`--audit` (or `--audit-only`, for runs already recorded) trains once more per epsilon with 500
of the holdout images as canaries, each added with probability 1/2, and gives the one-run
audit's lower bound on epsilon (`synth.dp.audit`, as `synth audit` does); it must never exceed
the claim.

Results go to bench/results_dp_images.json (rewritten after each run) and print as a table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_gpu import digits_16  # noqa: E402
from bench.bench_tabular import machine_info  # noqa: E402
from evaluation.images.evaluate import evaluate_images  # noqa: E402
from synth.atomic import atomic_write_text  # noqa: E402
from synth.config import (  # noqa: E402
    DPSpec,
    ImageModelSpec,
    ImageThresholds,
    PrivacySpec,
    TrainingSpec,
)
from synth.data.split import split_indices  # noqa: E402
from synth.dp.accounting import resolve_delta  # noqa: E402
from synth.dp.audit import audit  # noqa: E402
from synth.images.io import ImageSet  # noqa: E402
from synth.images.synthesizer import ImageDiffusionSynthesizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results_dp_images.json"
THREADS = 2
console = Console()


NAMES = [str(i) for i in range(10)]


def synthesizer(epsilon: float, args: argparse.Namespace) -> ImageDiffusionSynthesizer:
    """The DP settings of the module docstring at a finite epsilon; the demo's without DP."""
    dp = None if math.isinf(epsilon) else DPSpec(
        epsilon=epsilon, noise_multiplicity=args.multiplicity
    )  # fmt: skip
    steps = args.steps if dp else args.plain_steps
    return ImageDiffusionSynthesizer(
        ImageModelSpec(block_out_channels=[int(c) for c in args.channels.split(",")]),
        TrainingSpec(
            steps=steps, batch_size=args.batch if dp else 64, lr=args.lr if dp else 1e-3,
            warmup_steps=min(100, steps // 10), ema_decay=args.ema if dp else 0.999,
        ),
        seed=0,
        device="cpu",
        privacy=PrivacySpec(dp=dp),
    )  # fmt: skip


def audit_digits(epsilon: float, args: argparse.Namespace, x, y, tr, ho) -> dict[str, Any]:
    """One more training run with the holdout images as canaries, each added with
    probability 1/2, scored by denoising loss (as `synth audit` does)."""
    rng = np.random.default_rng(7)
    pick = np.sort(rng.choice(ho, size=min(args.canaries, len(ho)), replace=False))
    included = rng.random(len(pick)) < 0.5
    rows = np.concatenate([tr, pick[included]])
    synth = synthesizer(epsilon, args)
    synth.fit(ImageSet(x[rows], y[rows], NAMES, classes_declared=True), progress=args.progress)
    plan = synth.dp_
    delta = plan.delta if plan else resolve_delta(DPSpec(epsilon=1.0), len(rows))
    result = audit(
        -synth.denoising_loss(x[pick], y[pick]), included, delta=delta,
        claimed_epsilon=None if plan is None else plan.epsilon,
    )  # fmt: skip
    return {**result.model_dump(), "consistent": result.consistent}


def run(epsilon: float, args: argparse.Namespace, x, y, tr, ho) -> dict[str, Any]:
    synth = synthesizer(epsilon, args)
    steps, batch = synth.training.steps, synth.training.batch_size
    channels = synth.model.block_out_channels
    names = NAMES
    train = ImageSet(images=x[tr], labels=y[tr], class_names=names, classes_declared=True)
    start = time.perf_counter()
    synth.fit(train, progress=args.progress)
    fit_s = time.perf_counter() - start
    images, labels = synth.sample(len(tr), num_inference_steps=20, progress=False)
    result = evaluate_images(
        x[tr], y[tr], x[ho], y[ho], images, labels, ImageThresholds(),
        class_names=names, loss_fn=synth.denoising_loss, seed=0, progress=False,
    )  # fmt: skip
    m = result.metrics
    plan = synth.dp_
    return {
        "epsilon": "inf" if plan is None else epsilon,
        "channels": channels,
        "steps": steps,
        "batch_size": batch,
        "fit_s": round(fit_s, 1),
        "s_per_step": round(fit_s / steps, 2),
        "fid": m.get("fid"),
        "cas": m.get("cas"),
        "cas_ratio": m.get("cas_ratio"),
        "precision": m.get("precision"),
        "recall": m.get("recall"),
        "mia_auc": m.get("mia_auc"),
        "near_duplicate_share": m.get("near_duplicate_share"),
        "gate_failures": [c.name for c in result.gate.checks if c.applicable and not c.passed],
        "dp": None if plan is None else plan.model_dump(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epsilons", default="10,1,inf")
    p.add_argument("--steps", type=int, default=300, help="DP steps")
    p.add_argument("--plain-steps", type=int, default=800, help="steps without DP (the demo's)")
    p.add_argument("--batch", type=int, default=256, help="expected DP batch (people)")
    p.add_argument("--channels", default="16,32,32", help="UNet block_out_channels")
    p.add_argument("--multiplicity", type=int, default=4, help="noise draws per example")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema", type=float, default=0.99)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--audit", action="store_true", help="also the one-run audit (a 2nd fit)")
    p.add_argument("--audit-only", action="store_true", help="add the audit to recorded runs")
    p.add_argument("--canaries", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="smoke run: 20 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.plain_steps = 20, 20
    torch.set_num_threads(THREADS)
    x, y = digits_16()
    tr, ho = split_indices(len(x), 0.3, 0, stratify=y)
    results: dict[str, Any] = {"machine": machine_info(), "runs": []}
    if RESULTS.exists() and not args.quick:
        results["runs"] = json.loads(RESULTS.read_text()).get("runs", [])
    for epsilon in (float(e) for e in args.epsilons.split(",")):
        console.print(f"digits at epsilon {epsilon:g}")
        synth = synthesizer(epsilon, args)
        key = (
            "inf" if math.isinf(epsilon) else epsilon, synth.model.block_out_channels,
            synth.training.steps, synth.training.batch_size,
        )  # fmt: skip
        recorded = [r for r in results["runs"] if _key(r) == key]
        reuse = args.audit_only and recorded
        entry = recorded[0] if reuse else run(epsilon, args, x, y, tr, ho)
        if args.audit or args.audit_only:
            entry["audit"] = audit_digits(epsilon, args, x, y, tr, ho)
        results["runs"] = [r for r in results["runs"] if _key(r) != key] + [entry]
        if not args.quick:
            atomic_write_text(RESULTS, json.dumps(results, indent=1, default=str))
        console.print(entry)
    show(results["runs"])
    return 0


def _key(r: dict[str, Any]) -> tuple:
    return (r["epsilon"], r["channels"], r["steps"], r["batch_size"])


def show(runs: list[dict[str, Any]]) -> None:
    table = Table(title="Digits under DP (bench/results_dp_images.json)")
    for col in ("epsilon", "UNet", "steps", "batch", "FID", "CAS", "CAS ratio", "MIA AUC",
                "fit s", "s/step", "audit bound", "gate fails"):  # fmt: skip
        table.add_column(col)
    for r in runs:
        table.add_row(
            str(r["epsilon"]), str(r["channels"]), str(r["steps"]), str(r["batch_size"]),
            f"{r['fid']:.2f}", f"{r['cas']:.3f}", f"{r['cas_ratio']:.3f}",
            f"{r['mia_auc']:.3f}", str(r["fit_s"]), str(r["s_per_step"]),
            "-" if "audit" not in r else f"{r['audit']['epsilon_lower_bound']:.3f}",
            ",".join(r["gate_failures"]) or "-",
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    raise SystemExit(main())
