"""Run `anonymeter` itself on one prepared split; called by bench_anonymeter_crosscheck.py.

Runs in its own virtual environment (anonymeter pins numpy<1.27), never with this repository's
code: reads a JSON job on stdin (parquet paths and the attack settings), writes JSON on stdout.

    python -m venv /work/venvs/anonymeter && /work/venvs/anonymeter/bin/pip install anonymeter
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
from anonymeter.evaluators import InferenceEvaluator, LinkabilityEvaluator, SinglingOutEvaluator
from anonymeter.stats.confidence import EvaluationResults


def _fields(results: EvaluationResults, risk) -> dict:
    return {
        "risk": float(risk.value),
        "ci": [float(risk.ci[0]), float(risk.ci[1])],
        "main_rate": float(results.attack_rate.value),
        "control_rate": float(results.control_rate.value),
        "baseline_rate": float(results.baseline_rate.value),
    }


def main() -> None:
    job = json.load(sys.stdin)
    train = pd.read_parquet(job["train"])
    control = pd.read_parquet(job["control"])
    syn = pd.read_parquet(job["synthetic"])
    n, seed = job["n_attacks"], job["seed"]
    out: dict = {}
    start = time.perf_counter()
    warnings.simplefilter("ignore")
    for mode, key in (("multivariate", "singling_out"), ("univariate", "singling_out_univariate")):
        ev = SinglingOutEvaluator(
            ori=train,
            syn=syn,
            control=control,
            n_attacks=n,
            n_cols=job["n_cols"],
            max_attempts=job["max_attempts"],
            seed=seed,
        ).evaluate(mode=mode)
        out[key] = _fields(ev.results(), ev.risk())
    # Linkability and inference sample their targets with numpy's global generator.
    np.random.seed(seed)
    n_link = min(n, len(train), len(control))  # it samples both target sets without replacement
    ev = LinkabilityEvaluator(
        ori=train, syn=syn, control=control, aux_cols=tuple(job["link_columns"]), n_attacks=n_link
    ).evaluate(n_jobs=1)
    out["linkability"] = _fields(ev.results(), ev.risk())
    counts = []
    for secret in job["secrets"]:
        aux = [c for c in train.columns if c != secret]
        ev = InferenceEvaluator(
            ori=train,
            syn=syn,
            control=control,
            aux_cols=aux,
            secret=secret,
            regression=secret in job["ordered"],
            n_attacks=n,
        ).evaluate(n_jobs=1)
        r = ev.results()
        counts.append((r.n_attacks_ori, r.n_success, r.n_attacks_baseline, r.n_baseline))
        counts[-1] += (r.n_attacks_control, r.n_control)
    # pooled like ours: mean successes per target over the secrets, with anonymeter's statistics
    pooled = EvaluationResults(
        n_attacks=(int(counts[0][0]), int(counts[0][2]), int(counts[0][4])),
        n_success=float(np.mean([c[1] for c in counts])),
        n_baseline=float(np.mean([c[3] for c in counts])),
        n_control=float(np.mean([c[5] for c in counts])),
    )
    out["inference"] = _fields(pooled, pooled.risk())
    out["seconds"] = time.perf_counter() - start
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
