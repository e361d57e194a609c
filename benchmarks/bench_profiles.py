"""Quality of the privacy profiles side by side: strict (DP end to end) against the paper's profile.

For each seed: simulate 1,089 samples with realistic co-expression (the
``simulated-brca`` profile), preprocess to 978 genes, split 80/20 (stratified),
measure with the plaintext engine (the reference semantics every secure engine
reproduces bit for bit before noise), fit Private-PGM's star model (cold start
as mbi, and warm-started from the noisy tables) and evaluate TSTR accuracy,
DE-TPR, mean Wasserstein distance and the median per-gene spread ratio
(synthetic std / real std), for every epsilon. Optionally the real TCGA-BRCA
fixture at epsilon 100. Writes ``benchmarks/results/profiles.{json,md}``.

Usage: python benchmarks/bench_profiles.py [--seeds 3] [--eps 1,2,5,10,100] [--fixture]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from fedsyn.data import stratified_split
from fedsyn.engines.plaintext import PlaintextEngine, PlaintextOptions
from fedsyn.pipeline import RunConfig, make_params, split_holders
from fedsyn.randomness import sampling_rng
from fedsyn.release import synthesize

RESULTS = Path(__file__).resolve().parent / "results"
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_brca_vst_100x978.csv"


def simulated(seed: int, genes: int = 978):
    from fedsyn.datasets.simulator import BRCA_LIKE, simulate_counts
    from fedsyn.preprocess import PreprocessConfig, preprocess

    counts = simulate_counts(1089, int(genes * 1.18), n_classes=5, seed=seed, **BRCA_LIKE)
    data, _ = preprocess(counts, PreprocessConfig(n_genes=genes, seed=seed))
    return data


def evaluate_run(train, test, measurements, *, warm: bool, seed: int) -> dict:
    from fedsyn.evaluation import evaluate

    synth = synthesize(measurements, rng=sampling_rng(seed), warm_start=warm).to_expression()
    r = evaluate(train, test, synth, compute_trtr=False, random_state=seed)
    ratio = np.median(synth.values.std(axis=0) / np.maximum(train.values.std(axis=0), 1e-9))
    return {"tstr": r.tstr_accuracy, "de_tpr": r.de_tpr, "wasserstein": r.wasserstein_mean,
            "std_ratio": float(ratio), "majority": r.majority_rate,
            "coexpr_recall_within_r03": r.to_dict().get("coexpr_recall_within_r03")}


def run_case(data, seed: int, epsilon: float, profile: str) -> list[dict]:
    train, test = stratified_split(data, test_fraction=0.2, seed=seed)
    cfg = RunConfig(epsilon=epsilon, seed=seed, profile=profile)
    params, plan = make_params(cfg, train.n_labels, train.n_genes)
    holders = split_holders(train, 3, rng=np.random.default_rng(seed))
    t0 = time.perf_counter()
    m = PlaintextEngine(PlaintextOptions(seed=seed)).measure(holders, params, privacy=plan).measurements
    measure_s = time.perf_counter() - t0
    rows = []
    for warm in (False, True):
        t0 = time.perf_counter()
        res = evaluate_run(train, test, m, warm=warm, seed=seed)
        rows.append({"seed": seed, "epsilon": epsilon, "profile": profile, "warm_start": warm,
                     "epsilon_spent": plan.epsilon_spent, "sigma": plan.family("counts").sigma,
                     "measure_s": measure_s, "release_eval_s": time.perf_counter() - t0, **res})
    return rows


def table(rows: list[dict], keys=("tstr", "de_tpr", "wasserstein", "std_ratio", "coexpr_recall_within_r03")) -> str:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["epsilon"], r["profile"], r["warm_start"]), []).append(r)
    lines = ["| data | epsilon | profile | warm start | seeds | " + " | ".join(keys) + " |",
             "| --- | ---: | --- | --- | ---: | " + " | ".join("---:" for _ in keys) + " |"]
    for (ds, eps, prof, warm), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
        vals = []
        for k in keys:
            xs = [r[k] for r in rs if r.get(k) is not None]
            vals.append("n/a" if not xs else f"{np.mean(xs):.3f}" + (f" ± {np.std(xs):.3f}" if len(xs) > 1 else ""))
        lines.append(f"| {ds} | {eps:g} | {prof} | {'yes' if warm else 'no'} | {len(rs)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--eps", default="1,2,5,10,100")
    ap.add_argument("--genes", type=int, default=978)
    ap.add_argument("--fixture", action="store_true", help="also the real TCGA-BRCA fixture at epsilon 100")
    ap.add_argument("--resume", metavar="LOG", help="reuse the JSON rows an interrupted run printed to LOG")
    args = ap.parse_args()
    eps_list = [float(e) for e in args.eps.split(",")]
    rows = []
    if args.resume:
        rows = [json.loads(line) for line in Path(args.resume).read_text().splitlines() if line.startswith("{")]
    done = {(r["dataset"].split()[0], r["seed"], r["epsilon"], r["profile"]) for r in rows}
    for seed in range(1, args.seeds + 1):
        if all(("simulated", seed, eps, p) in done for eps in eps_list for p in ("paper", "strict")):
            continue
        data = simulated(seed, args.genes)
        for eps in eps_list:
            for profile in ("paper", "strict"):
                if ("simulated", seed, eps, profile) in done:
                    continue
                for r in run_case(data, seed, eps, profile):
                    rows.append({"dataset": f"simulated {data.n_samples} x {data.n_genes}", **r})
                    print(json.dumps(rows[-1]), flush=True)
    if args.fixture and FIXTURE.exists():
        from fedsyn.readers import load_expression

        data = load_expression(FIXTURE)
        for seed in range(1, args.seeds + 1):
            for profile in ("paper", "strict"):
                if ("TCGA-BRCA", seed, 100.0, profile) in done:
                    continue
                for r in run_case(data, seed, 100.0, profile):
                    rows.append({"dataset": "TCGA-BRCA fixture 100 x 978", **r})
                    print(json.dumps(rows[-1]), flush=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "load": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profiles.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (RESULTS / "profiles.md").write_text(
        "# Privacy profiles side by side (benchmarks/bench_profiles.py)\n\n"
        f"Plaintext engine (the reference semantics), star model, 1,000 mirror-descent steps; {meta['date']}, "
        f"load {meta['load'][0]:.1f}. Mean ± std over seeds.\n\n" + table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
