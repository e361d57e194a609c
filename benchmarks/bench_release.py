"""Benchmark the release step (fedsyn.release): fit and sample time, and fit quality.

Part 1 (timings): the ``"star"`` estimator's fit and sampling time at d genes
(default 100 / 1,000 / 5,000 / 20,000), N = 1,089 records, L = 5 labels, on
simulated noisy marginals with the epsilon-10 noise of the whole release,
``sigma = 0.5296 * sqrt(2d + 1)`` (tight RDP over 2d+1 unit-sensitivity tables,
``docs/DESIGN.md``). mbi's default estimator is timed at d = 100 only with
``--with-mbi`` (it takes minutes; otherwise DESIGN's figure on this machine is
quoted).

Part 2 (iterations as a regularizer): on simulated ground truth at d = 1,000,
epsilon 10, the mean total-variation distance between the fitted and the true
P(gene bin | label) for several iteration counts, over several noise draws.

Writes ``benchmarks/results/release.json`` and ``release.md``.

Usage::

    python benchmarks/bench_release.py [--genes 100,1000,5000,20000] [--with-mbi]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from pathlib import Path

import numpy as np

from fedsyn import release
from fedsyn.atomic import write_text_atomic
from fedsyn.measurements import NoisyMeasurements

N_RECORDS = 1089
N_LABELS = 5
SIGMA_PER_TABLE_EPS10 = 0.5296
LABEL_PROBS = np.array([0.5, 0.2, 0.15, 0.1, 0.05])  # imbalanced, like BRCA subtypes
DESIGN_MBI_D100 = {"fit_s": 188.0, "sample_s": 84.0, "source": "docs/DESIGN.md (this machine, 1,000 iterations)"}


def simulate(d: int, *, rng: np.random.Generator, n: int = N_RECORDS):
    """A ground-truth dataset: quartile bins of expression with label effects.

    Gene ``g`` of a record with label ``l`` is ``a[g, l] + N(0, 1)`` with label
    effects ``a[g, :] ~ N(0, s_g^2)``, ``s_g`` uniform on [0, 1.5] (many genes
    barely differential); each gene is binned at its empirical quartiles.

    Returns the true (gene, label) counts, shape (d, 4, L).
    """
    labels = rng.choice(N_LABELS, n, p=LABEL_PROBS)
    effects = rng.normal(size=(d, N_LABELS)) * rng.uniform(0.0, 1.5, size=(d, 1))
    x = effects[:, labels].T + rng.standard_normal((n, d))
    q = np.quantile(x, [0.25, 0.5, 0.75], axis=0)  # (3, d)
    bins = (x[:, None, :] >= q[None, :, :]).sum(axis=1)  # (n, d)
    two = np.zeros((d, 4, N_LABELS))
    flat = (np.arange(d)[None, :] * 4 + bins) * N_LABELS + labels[:, None]
    two = np.bincount(flat.ravel(), minlength=d * 4 * N_LABELS).reshape(d, 4, N_LABELS).astype(float)
    return two


BRCA_FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_brca_vst_100x978.csv"


def simulate_brca(*, rng: np.random.Generator, n: int = N_RECORDS, path: Path = BRCA_FIXTURE):
    """A ground truth shaped like TCGA-BRCA: N records from the real data's star model.

    Bins the 100 x 978 VST fixture at its quartiles, takes its label frequencies
    and its P(bin | label) (add-1/2 smoothed, since the rarest subtype has 3
    samples), and draws ``n`` records from that star model. Returns the drawn
    (gene, label) counts, shape (978, 4, L).
    """
    import pandas as pd

    df = pd.read_csv(path)
    label_col = df.columns[-1]
    names, labels = np.unique(df[label_col].to_numpy(), return_inverse=True)
    x = df.drop(columns=[df.columns[0], label_col]).to_numpy(dtype=float)
    q = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    bins = (x[:, None, :] >= q[None, :, :]).sum(axis=1)
    d, n_labels = x.shape[1], len(names)
    counts = np.zeros((d, 4, n_labels))
    for g in range(d):
        np.add.at(counts[g], (bins[:, g], labels), 1)
    cond = (counts + 0.5) / (counts.sum(axis=1, keepdims=True) + 2.0)
    label_p = np.bincount(labels, minlength=n_labels) / len(labels)
    new_labels = rng.choice(n_labels, n, p=label_p)
    cdf = np.cumsum(cond, axis=1)[:, :3, :]
    u = rng.random((n, d))
    new_bins = (u[:, :, None] >= cdf[:, :, new_labels].transpose(2, 0, 1)).sum(axis=2)
    flat = (np.arange(d)[None, :] * 4 + new_bins) * n_labels + new_labels[:, None]
    return np.bincount(flat.ravel(), minlength=d * 4 * n_labels).reshape(d, 4, n_labels).astype(float)


def noisy(two: np.ndarray, *, rng: np.random.Generator, epsilon_sigma: float = SIGMA_PER_TABLE_EPS10):
    d = two.shape[0]
    sigma = epsilon_sigma * math.sqrt(2 * d + 1)
    return NoisyMeasurements(
        gene_names=tuple(f"G{i:05d}" for i in range(d)),
        label_names=tuple(f"L{k}" for k in range(N_LABELS)),
        n_records=int(two[0].sum()),
        one_way=two.sum(axis=2) + sigma * rng.standard_normal((d, 4)),
        label=two[0].sum(axis=0) + sigma * rng.standard_normal(N_LABELS),
        two_way=two + sigma * rng.standard_normal(two.shape),
        bin_means=np.tile(np.arange(4.0), (d, 1)),
        sigma=sigma,
    )


def mean_tv(conditional: np.ndarray, two: np.ndarray, *, weighted: bool = False) -> float:
    """Mean over genes and labels of TV(P_fit(. | g, l), P_true(. | g, l)).

    ``weighted``: labels weighted by their true frequency (a record-level
    average) instead of equally (which stresses the rare labels).
    """
    true = two / np.maximum(two.sum(axis=1, keepdims=True), 1e-12)
    tv = 0.5 * np.abs(conditional - true).sum(axis=1)  # (d, L)
    if weighted:
        w = two[0].sum(axis=0) / two[0].sum()
        return float((tv * w).sum(axis=1).mean())
    return float(tv.mean())


def time_star(d: int, iterations: int, rng: np.random.Generator) -> dict:
    two = simulate(d, rng=rng)
    meas = noisy(two, rng=rng)
    t0 = time.perf_counter()
    model = release.fit(meas, estimator="star", iterations=iterations)
    t1 = time.perf_counter()
    bins, labels = release.sample(model, N_RECORDS, rng=rng)
    t2 = time.perf_counter()
    release.debin(bins, meas.bin_means)
    t3 = time.perf_counter()
    return {
        "estimator": "star",
        "d": d,
        "iterations": iterations,
        "sigma": meas.sigma,
        "fit_s": t1 - t0,
        "sample_s": t2 - t1,
        "debin_s": t3 - t2,
        "tv_to_truth": mean_tv(model.conditional, two),
    }


def time_mbi(d: int, iterations: int, rng: np.random.Generator) -> dict:
    two = simulate(d, rng=rng)
    meas = noisy(two, rng=rng)
    t0 = time.perf_counter()
    model = release.fit(meas, estimator="mbi", iterations=iterations)
    t1 = time.perf_counter()
    star = release.fit(meas, estimator="star", iterations=iterations)
    return {
        "estimator": "mbi",
        "d": d,
        "iterations": model.iterations,
        "sigma": meas.sigma,
        "fit_s": t1 - t0,
        "tv_to_truth": mean_tv(model.conditional, two),
        "star_tv_to_truth": mean_tv(star.conditional, two),
        "max_abs_diff_joint_vs_star": float(np.abs(model.joint - star.joint).max()),
    }


def regularization(d: int, iteration_list: list[int], seeds: int, *, truth: str = "simulated") -> dict:
    rows = {it: [] for it in iteration_list}
    rows_w = {it: [] for it in iteration_list}
    raw, uniform = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        two = simulate(d, rng=rng) if truth == "simulated" else simulate_brca(rng=rng)
        meas = noisy(two, rng=rng)
        clipped = np.maximum(meas.two_way, 0) + 1e-9
        raw.append(mean_tv(clipped / clipped.sum(axis=1, keepdims=True), two))
        uniform.append(mean_tv(np.full_like(two, 0.25), two))
        for it in iteration_list:
            cond = release.fit(meas, iterations=it).conditional
            rows[it].append(mean_tv(cond, two))
            rows_w[it].append(mean_tv(cond, two, weighted=True))
    return {
        "truth": truth,
        "d": int(two.shape[0]),
        "seeds": seeds,
        "tv_by_iterations": {
            str(it): {
                "mean": float(np.mean(v)),
                "sd": float(np.std(v)),
                "label_weighted_mean": float(np.mean(rows_w[it])),
            }
            for it, v in rows.items()
        },
        "tv_clipped_noisy_counts": float(np.mean(raw)),
        "tv_uniform": float(np.mean(uniform)),
    }


def markdown(result: dict) -> str:
    lines = [
        "# Release step benchmark",
        "",
        f"Machine: {result['machine']}. N = {N_RECORDS}, L = {N_LABELS}, epsilon-10 noise "
        f"sigma = {SIGMA_PER_TABLE_EPS10} * sqrt(2d+1). Generated by `benchmarks/bench_release.py`. "
        f"Fit times exclude the one-off import of jax and mbi ({result['import_mbi_s']:.1f} s); they include "
        "building mbi's Domain and LinearMeasurements.",
        "",
        "## Fit and sample time",
        "",
        "| estimator | genes d | iterations | sigma | fit (s) | sample n=1,089 (s) | de-bin (s) | mean TV to truth |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["timings"]:
        sample_s = f"{r['sample_s']:.2f}" if "sample_s" in r else "-"
        debin_s = f"{r['debin_s']:.3f}" if "debin_s" in r else "-"
        lines.append(
            f"| {r['estimator']} | {r['d']:,} | {r['iterations']} | {r['sigma']:.1f} | {r['fit_s']:.2f} | "
            f"{sample_s} | {debin_s} | {r['tv_to_truth']:.4f} |"
        )
    m = result["mbi_d100"]
    if m.get("measured"):
        lines += [
            "",
            f"mbi's default estimator at d = 100 ({m['iterations']} iterations): fit {m['fit_s']:.1f} s, "
            f"max |joint difference| to the star estimator {m['max_abs_diff_joint_vs_star']:.2e} counts "
            f"(TV to truth {m['tv_to_truth']:.4f} vs {m['star_tv_to_truth']:.4f}).",
        ]
    else:
        lines += [
            "",
            f"mbi's default estimator at d = 100 (not re-run; {m['source']}): fit {m['fit_s']:.0f} s "
            f"(almost all XLA compilation), sampling {m['sample_s']:.0f} s; d = 200 did not finish in 30 min.",
        ]
    for reg in result["regularization"]:
        lines += [
            "",
            f"## Iterations as a regularizer: {reg['truth']} truth (d = {reg['d']:,}, epsilon 10, "
            f"{reg['seeds']} noise draws)",
            "",
            "Mean total-variation distance between fitted and true P(gene bin | label), over genes and",
            "labels (equal weights), its sd over noise draws, and the mean with labels weighted by frequency.",
            "",
            "| iterations | mean TV | sd | label-weighted mean TV |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for it, v in reg["tv_by_iterations"].items():
            lines.append(f"| {it} | {v['mean']:.4f} | {v['sd']:.4f} | {v['label_weighted_mean']:.4f} |")
        lines += [
            f"| uniform P = 1/4 | {reg['tv_uniform']:.4f} | | |",
            f"| clipped noisy counts | {reg['tv_clipped_noisy_counts']:.4f} | | |",
        ]
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genes", default="100,1000,5000,20000")
    ap.add_argument("--iterations", type=int, default=release.DEFAULT_ITERATIONS)
    ap.add_argument("--reg-genes", type=int, default=1000)
    ap.add_argument("--reg-iterations", default="50,100,250,500,1000,3000")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--with-mbi", action="store_true", help="time mbi's default estimator at d=100 (minutes)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("bench_release")

    t0 = time.perf_counter()
    release._mbi()  # import jax and mbi once, outside the timed fits
    import_s = time.perf_counter() - t0
    timings = []
    for d in [int(x) for x in args.genes.split(",") if x]:
        r = time_star(d, args.iterations, np.random.default_rng(d))
        log.info("star d=%d fit %.2f s sample %.2f s TV %.4f", d, r["fit_s"], r["sample_s"], r["tv_to_truth"])
        timings.append(r)
    mbi_row = dict(DESIGN_MBI_D100, measured=False)
    if args.with_mbi:
        mbi_row = dict(time_mbi(100, args.iterations, np.random.default_rng(100)), measured=True)
        log.info("mbi d=100 fit %.1f s", mbi_row["fit_s"])
        timings.append(mbi_row)
    its = [int(x) for x in args.reg_iterations.split(",")]
    reg = [regularization(args.reg_genes, its, args.seeds)]
    if BRCA_FIXTURE.exists():
        reg.append(regularization(0, its, args.seeds, truth="TCGA-BRCA-shaped"))
    for r in reg:
        log.info("regularization (%s): %s", r["truth"], json.dumps(r["tv_by_iterations"]))
    result = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "n_records": N_RECORDS,
        "import_mbi_s": import_s,
        "n_labels": N_LABELS,
        "timings": timings,
        "mbi_d100": mbi_row,
        "regularization": reg,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "release.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out / "release.md", markdown(result))
    log.info("wrote %s", out / "release.md")


if __name__ == "__main__":
    main()
