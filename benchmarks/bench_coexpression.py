"""Co-expression frontier: star vs tree vs factor models across epsilon (issue 12).

For every dataset, gene count, model and epsilon: bin the training records
(quartiles, fedsyn.reference), run the plaintext reference of the model's
release (fedsyn.structure.simulate; the star model with fedsyn's star
estimator, as release.fit), de-bin with the bin means, and score:

* within-class co-expression edges: for every class with >= --min-class real
  training and synthetic records, the real edges ``|r| > t`` (Pearson, real
  training records of the class) and the synthetic edges; recall = true
  synthetic edges / real edges, precision = true synthetic edges / synthetic
  edges, both micro-averaged over the classes (edge counts summed); t = 0.3, 0.5;
  the same pooled over all records for reference;
* TSTR accuracy and DE-TPR from fedsyn.evaluation.evaluate;
* fit and sampling times.

Datasets: ``fixture`` (the real TCGA-BRCA 100 x 978 fixture, stratified 80/20
split) and ``factorgen`` -- TEMPORARY until the co-expression simulator lands:
a class-conditional Gaussian with the fixture's class means and a 10-factor
within-class correlation (top eigenvectors of the fixture's pooled within-class
correlation), 1,089 training and 272 test records. Its pooled fraction of gene
pairs with |r| > 0.3 / 0.5 is 0.17 / 0.020 (fixture: 0.18 / 0.024).

Writes benchmarks/results/coexpression.json (appending) and coexpression.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedsyn import reference, release  # noqa: E402
from fedsyn import structure as cx  # noqa: E402
from fedsyn.data import ExpressionData  # noqa: E402
from fedsyn.evaluation import evaluate  # noqa: E402
from fedsyn.star_model import StarMeasurements, mirror_descent  # noqa: E402

FIXTURE = ROOT.parent / "shared" / "data" / "tcga_brca_vst_100x978.csv"
if not FIXTURE.exists():
    FIXTURE = Path("/work/shared/data/tcga_brca_vst_100x978.csv")
RESULTS = ROOT / "benchmarks" / "results"

MODELS = {
    "star": dict(model="star"),
    "star-warm": dict(model="star", run="simulate"),
    "tree": dict(model="tree", selection="gumbel_mst"),
    "tree-noisygram": dict(model="tree", selection="noisy_gram_mst"),
    "tree-random": dict(model="tree", selection="random"),
    "factor1x4": dict(model="factor", n_factors=1, factor_levels=4),
    "factor2x8": dict(model="factor", n_factors=2, factor_levels=8),
    "factor1x8": dict(model="factor", n_factors=1, factor_levels=8),
    "factor3x8": dict(model="factor", n_factors=3, factor_levels=8),
    "factor2x4": dict(model="factor", n_factors=2, factor_levels=4),
    "factor3x4": dict(model="factor", n_factors=3, factor_levels=4),
    "factor2x4j": dict(model="factor", n_factors=2, factor_levels=4, joint=True),
    "factor1x4g0": dict(model="factor", n_factors=1, factor_levels=4, gate=0.0),
    "factor1x4g1": dict(model="factor", n_factors=1, factor_levels=4, gate=1.0),
}


# --------------------------------------------------------------------------- data


def load_fixture():
    import pandas as pd

    df = pd.read_csv(FIXTURE, index_col=0)
    names, y = np.unique(df["subtype"].to_numpy(), return_inverse=True)
    x = df.drop(columns=["subtype"]).to_numpy(dtype=np.float64)
    return x, y.astype(np.int64), tuple(str(s) for s in names), tuple(df.columns[:-1])


def factorgen(n_train: int, n_test: int, seed: int, n_factors: int = 10):
    """TEMPORARY generator (until the co-expression simulator lands); see module docstring."""
    x0, y0, names, genes = load_fixture()
    n_labels = len(names)
    mu = np.stack([x0[y0 == k].mean(axis=0) for k in range(n_labels)])
    resid = x0 - mu[y0]
    sd = resid.std(axis=0) + 1e-6
    corr = np.corrcoef((resid / sd).T)
    w, v = np.linalg.eigh(corr)
    w, v = w[::-1][:n_factors], v[:, ::-1][:, :n_factors]
    load = v * np.sqrt(w)
    comm = (load**2).sum(axis=1)
    uniq = np.clip(1.0 - comm, 0.15, None)
    load = load / np.sqrt(comm + uniq)[:, None]
    uniq = uniq / (comm + uniq)
    p = np.bincount(y0, minlength=n_labels) / y0.size
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.choice(n_labels, n, p=p)
    z = rng.standard_normal((n, n_factors))
    e = rng.standard_normal((n, x0.shape[1])) * np.sqrt(uniq)
    x = mu[y] + (z @ load.T + e) * sd
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), names, genes


def split_fixture(seed: int):
    x, y, names, genes = load_fixture()
    rng = np.random.default_rng(seed)
    test = np.zeros(y.size, dtype=bool)
    for k in np.unique(y):
        idx = np.flatnonzero(y == k)
        if idx.size >= 2:
            test[rng.choice(idx, max(1, round(0.2 * idx.size)), replace=False)] = True
    return (x[~test], y[~test]), (x[test], y[test]), names, genes


def quartile_bins_and_means(x: np.ndarray):
    """Paper-mode binning through the reference (fixed point, exact bin means)."""
    from fedsyn import fixedpoint

    fp = fixedpoint.encode(x) if hasattr(fixedpoint, "encode") else np.round(x * 2**16).astype(np.int64)
    stats = reference.bin_statistics(fp, np.zeros(x.shape[0], dtype=np.int64), 1)
    means = stats.means.astype(np.float64) / 2**16
    return stats.bins.astype(np.int64), means


# --------------------------------------------------------------------------- metrics


def edge_scores(real_x, real_y, syn_x, syn_y, thresholds, n_labels, min_class):
    """Within-class (micro-averaged) and pooled edge recall / precision."""
    iu = None
    out = {}
    acc = {t: [0, 0, 0] for t in thresholds}
    pooled = {t: [0, 0, 0] for t in thresholds}

    def corr(a):
        with np.errstate(all="ignore"):
            c = np.corrcoef(a.T)
        return np.nan_to_num(c[iu])

    iu = np.triu_indices(real_x.shape[1], 1)
    classes = 0
    for k in range(n_labels):
        a, b = real_x[real_y == k], syn_x[syn_y == k]
        if len(a) < min_class or len(b) < min_class:
            continue
        classes += 1
        cr, cs = corr(a), corr(b)
        for t in thresholds:
            er, es = np.abs(cr) > t, np.abs(cs) > t
            acc[t][0] += int(np.sum(er & es))
            acc[t][1] += int(er.sum())
            acc[t][2] += int(es.sum())
    cr, cs = corr(real_x), corr(syn_x)
    for t in thresholds:
        er, es = np.abs(cr) > t, np.abs(cs) > t
        pooled[t] = [int(np.sum(er & es)), int(er.sum()), int(es.sum())]
    for t in thresholds:
        tp, nr, ns = acc[t]
        out[f"within_recall_{t}"] = tp / nr if nr else None
        out[f"within_precision_{t}"] = tp / ns if ns else None
        tp, nr, ns = pooled[t]
        out[f"pooled_recall_{t}"] = tp / nr if nr else None
        out[f"pooled_precision_{t}"] = tp / ns if ns else None
    out["classes_scored"] = classes
    out["corr_of_corr_pooled"] = float(np.corrcoef(cr, cs)[0, 1]) if cs.std() > 0 else None
    return out


def _data(x, y, names, genes, tag):
    return ExpressionData(
        values=x,
        gene_names=tuple(genes),
        sample_ids=tuple(f"{tag}{i}" for i in range(x.shape[0])),
        labels=np.asarray(y, dtype=np.int64),
        label_names=tuple(names),
    )


# --------------------------------------------------------------------------- runs


def run_star(bins, y, n_labels, epsilon, delta, iterations, rng):
    d = bins.shape[1]
    fams = cx.model_families("star", d)
    sig = {f.name: 0.0 for f in fams} if not math.isfinite(epsilon) else cx.calibrate_families(fams, epsilon, delta)
    two = reference.attr_label_tables(bins, y, n_labels).astype(np.float64)
    lab = np.bincount(y, minlength=n_labels).astype(np.float64)
    if math.isfinite(epsilon):
        two = two + rng.normal(0, sig["gene_label"], two.shape)
        lab = lab + rng.normal(0, sig["label"], lab.shape)
    w2 = 1.0 / sig["gene_label"] ** 2 if sig["gene_label"] > 0 else 1.0
    wl = 1.0 / sig["label"] ** 2 if sig["label"] > 0 else 1.0
    total = float(bins.shape[0]) if not math.isfinite(epsilon) else float(max(lab.sum(), 1.0))
    meas = StarMeasurements(
        two_way=two,
        one_way=np.zeros((d, 4)),
        label=lab,
        w_two_way=np.full(d, w2),
        w_one_way=np.zeros(d),
        w_label=wl,
        total=total,
    )
    t0 = time.perf_counter()
    fit = mirror_descent(meas, iterations=iterations)
    t_fit = time.perf_counter() - t0
    model = release.ReleaseModel(
        gene_names=tuple(f"g{i}" for i in range(d)),
        label_names=tuple(f"l{i}" for i in range(n_labels)),
        total=total,
        label_probs=fit.label_probs,
        conditional=fit.conditional,
        estimator="star",
        iterations=iterations,
    )
    t0 = time.perf_counter()
    sb, sy = release.sample(model, bins.shape[0], rng=rng)
    return sb.astype(np.int64), sy, sig, {"fit": t_fit, "sample": time.perf_counter() - t0}


def one(dataset, n_genes, model, epsilon, seed, args):
    if dataset == "fixture":
        (xtr, ytr), (xte, yte), names, genes = split_fixture(seed)
    else:
        (xtr, ytr), (xte, yte), names, genes = factorgen(args.n_train, args.n_test, seed)
    if n_genes < xtr.shape[1]:
        keep = np.sort(np.random.default_rng(1000 + seed).choice(xtr.shape[1], n_genes, replace=False))
        xtr, xte, genes = xtr[:, keep], xte[:, keep], tuple(genes[i] for i in keep)
    n_labels = len(names)
    bins, means = quartile_bins_and_means(xtr)
    rng = np.random.default_rng(seed * 7919 + 17)
    t0 = time.perf_counter()
    spec = dict(MODELS[model])
    if spec.pop("run", None) != "simulate" and spec["model"] == "star":
        sb, sy, sig, times = run_star(bins, ytr, n_labels, epsilon, args.delta, args.star_iterations, rng)
    else:
        cfg = cx.CoexpressionConfig(
            epsilon=epsilon, delta=args.delta, iterations=args.iterations, **spec
        )
        rel = cx.simulate(bins, ytr, n_labels, cfg, rng=rng)
        sb, sy, sig, times = rel.bins.astype(np.int64), rel.labels, rel.sigmas, rel.timings
    total_t = time.perf_counter() - t0
    sx = release.debin(sb, means)
    ev = evaluate(
        _data(xtr, ytr, names, genes, "tr"),
        _data(xte, yte, names, genes, "te"),
        _data(sx, sy, names, genes, "sy"),
        compute_trtr=False,
    )
    row = {
        "dataset": dataset,
        "n_train": int(xtr.shape[0]),
        "genes": int(xtr.shape[1]),
        "model": model,
        "epsilon": epsilon if math.isfinite(epsilon) else None,
        "seed": seed,
        "tstr_accuracy": ev.tstr_accuracy,
        "de_tpr": ev.de_tpr,
        "wasserstein": ev.wasserstein_mean,
        "sigmas": {k: (v if math.isfinite(v) else None) for k, v in sig.items()},
        "times": {k: round(v, 3) for k, v in times.items()},
        "total_time": round(total_t, 2),
    }
    row.update(edge_scores(xtr, ytr, sx, sy, (0.3, 0.5), n_labels, args.min_class))
    return row


def fmt(v, nd=3):
    return "" if v is None else f"{v:.{nd}f}"


def write_markdown(rows, path):
    import collections

    groups = collections.defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["genes"], r["model"], r["epsilon"])].append(r)
    lines = [
        "# Co-expression frontier (benchmarks/bench_coexpression.py)",
        "",
        "Mean over seeds (n = number of seeds). Within-class edges: |Pearson r| above the threshold in",
        "the real training records of a class vs in the synthetic records of that class, micro-averaged",
        "over classes with enough records. epsilon '-' = exact tables (non-private ceiling of the model).",
        "`factorgen` is a TEMPORARY 10-factor Gaussian generator fitted to the fixture (see the script).",
        "",
        "| dataset | n | genes | model | epsilon | seeds | recall .3 | precision .3 | recall .5 | precision .5 | pooled recall .3 | TSTR acc | DE-TPR | fit s | sample s |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = {m: i for i, m in enumerate(MODELS)}

    def key(k):
        ds, g, m, e = k
        return (ds, g, math.inf if e is None else e, order.get(m, 99))

    for k in sorted(groups, key=key):
        rs = groups[k]

        def mean(name, sub=None):
            vals = [(r[name] if sub is None else r[name].get(sub)) for r in rs]  # noqa: B023 (called inside this iteration)
            vals = [v for v in vals if v is not None]
            return float(np.mean(vals)) if vals else None

        ds, g, m, e = k
        lines.append(
            f"| {ds} | {rs[0]['n_train']} | {g} | {m} | {'-' if e is None else e:g} | {len(rs)} | "
            f"{fmt(mean('within_recall_0.3'))} | {fmt(mean('within_precision_0.3'))} | "
            f"{fmt(mean('within_recall_0.5'))} | {fmt(mean('within_precision_0.5'))} | "
            f"{fmt(mean('pooled_recall_0.3'))} | {fmt(mean('tstr_accuracy'))} | {fmt(mean('de_tpr'))} | "
            f"{fmt(mean('times', 'fit'), 2)} | {fmt(mean('times', 'sample'), 2)} |"
            if e is not None
            else f"| {ds} | {rs[0]['n_train']} | {g} | {m} | - | {len(rs)} | "
            f"{fmt(mean('within_recall_0.3'))} | {fmt(mean('within_precision_0.3'))} | "
            f"{fmt(mean('within_recall_0.5'))} | {fmt(mean('within_precision_0.5'))} | "
            f"{fmt(mean('pooled_recall_0.3'))} | {fmt(mean('tstr_accuracy'))} | {fmt(mean('de_tpr'))} | "
            f"{fmt(mean('times', 'fit'), 2)} | {fmt(mean('times', 'sample'), 2)} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="factorgen,fixture")
    ap.add_argument("--genes", default="200,978")
    ap.add_argument("--models", default="star,tree,factor1x4,factor2x8")
    ap.add_argument("--epsilons", default="1,10,100,inf")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--iterations", type=int, default=100, help="mirror-descent steps after the warm start")
    ap.add_argument("--star-iterations", type=int, default=1000)
    ap.add_argument("--n-train", type=int, default=1089)
    ap.add_argument("--n-test", type=int, default=272)
    ap.add_argument("--min-class", type=int, default=10)
    ap.add_argument("--out", default=str(RESULTS / "coexpression.json"))
    ap.add_argument("--fresh", action="store_true", help="overwrite instead of appending")
    args = ap.parse_args(argv)
    out = Path(args.out)
    rows = [] if args.fresh or not out.exists() else json.loads(out.read_text())["rows"]
    for ds in args.datasets.split(","):
        for g in (int(s) for s in args.genes.split(",")):
            for e in (float(s) for s in args.epsilons.split(",")):
                for m in args.models.split(","):
                    for s in (int(x) for x in args.seeds.split(",")):
                        row = one(ds, g, m, e, s, args)
                        rows = [
                            r
                            for r in rows
                            if (r["dataset"], r["genes"], r["model"], r["epsilon"], r["seed"])
                            != (row["dataset"], row["genes"], row["model"], row["epsilon"], row["seed"])
                        ]
                        rows.append(row)
                        print(
                            f"{ds} {g} {m} eps={e:g} seed={s}: rec.3 {fmt(row['within_recall_0.3'])} "
                            f"prec.3 {fmt(row['within_precision_0.3'])} rec.5 {fmt(row['within_recall_0.5'])} "
                            f"prec.5 {fmt(row['within_precision_0.5'])} TSTR {fmt(row['tstr_accuracy'])} "
                            f"DE {fmt(row['de_tpr'])} times {row['times']}",
                            flush=True,
                        )
                        out.parent.mkdir(parents=True, exist_ok=True)
                        meta = {"machine": platform.node(), "python": platform.python_version()}
                        out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
                        write_markdown(rows, out.with_suffix(".md"))


if __name__ == "__main__":
    main()
