"""Evaluation report files: metrics JSON, markdown summary, per-gene CSV and PNG plots.

Everything is rendered in memory first and only then written, each file
atomically (temporary file in the same directory, then :func:`os.replace`), so
a failure while computing or plotting leaves no file behind and a reader never
sees a half-written one.

The report contains statistics of the *real* data (per-gene means and standard
deviations in the plots, a PCA of the real training records, the real gene-gene
correlations, test-set accuracies, distances to real records, membership
attacks on real records). It is **not** covered by the
differential-privacy guarantee of the synthetic data: keep it with the data
holders.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_bytes_atomic
from .data import ExpressionData
from .errors import InputError
from .evaluation import EvaluationResult

__all__ = ["write_report", "REPORT_FILES"]

logger = logging.getLogger(__name__)

#: Keys of the dict returned by :func:`write_report` and the file names they map to.
REPORT_FILES: dict[str, str] = {
    "wasserstein_csv": "wasserstein_per_gene.csv",
    "marginal_fidelity_png": "marginal_fidelity.png",
    "pca_png": "pca.png",
    "correlation_png": "correlation.png",
    "report_md": "report.md",
    "metrics_json": "metrics.json",
}

_REAL_COLOR = "#1f77b4"
_SYNTH_COLOR = "#d62728"
# Genes in the correlation heatmaps, and genes whose pairs make the scatter of pairwise r.
_HEATMAP_GENES = 60
_SCATTER_GENES = 200


def write_report(
    result: EvaluationResult,
    out_dir: str | os.PathLike[str],
    *,
    real_train: ExpressionData,
    synthetic: ExpressionData,
    title: str = "fedsyn synthetic data evaluation",
    extra: dict[str, Any] | None = None,
    privacy: str | None = None,
) -> dict[str, Path]:
    """Write the evaluation report of one synthetic dataset.

    Parameters
    ----------
    result : EvaluationResult
        Output of :func:`fedsyn.evaluation.evaluate`.
    out_dir : path
        Directory to write into (created if missing); existing report files in
        it are replaced.
    real_train : ExpressionData
        The real training set ``result`` was computed with (for the plots).
    synthetic : ExpressionData
        The synthetic set ``result`` was computed with (for the plots).
    title : str, default "fedsyn synthetic data evaluation"
        Heading of ``report.md``.
    extra : dict or None, default None
        JSON-serializable context (run parameters: engine, epsilon, seed, ...),
        stored under the key ``"extra"`` of ``metrics.json`` and listed in
        ``report.md``.
    privacy : str or None, default None
        The release's privacy guarantee in one sentence
        (:func:`fedsyn.accounting.privacy_sentence`), shown at the top of
        ``report.md``.

    Returns
    -------
    dict of str to Path
        The written files, keyed as in :data:`REPORT_FILES`:
        ``metrics_json`` (``result.to_dict()`` plus ``"title"`` and ``"extra"``),
        ``report_md``, ``wasserstein_csv`` (gene, distance),
        ``marginal_fidelity_png`` (per-gene mean and standard deviation, real vs
        synthetic, and the histogram of per-gene Wasserstein distances),
        ``pca_png`` (real training and synthetic records projected on the first
        two principal components of the real training data) and
        ``correlation_png`` (within-class and pooled gene-gene correlation:
        heatmaps of the most connected real genes in module order, real vs
        synthetic, and the scatter of real vs synthetic pairwise r).

    Raises
    ------
    InputError
        ``real_train``/``synthetic`` do not match ``result`` (genes or sizes).
    TypeError
        ``extra`` is not JSON-serializable.
    """
    _check_inputs(result, real_train, synthetic)
    out = Path(out_dir)
    extra = dict(extra or {})

    # Render everything in memory first: nothing is written if any step fails.
    real_x = _aligned_values(real_train, result.gene_names)
    synth_x = _aligned_values(synthetic, result.gene_names)
    contents: dict[str, bytes] = {
        "wasserstein_csv": _wasserstein_csv(result).encode("utf-8"),
        "marginal_fidelity_png": _marginal_fidelity_png(result, real_x, synth_x),
        "pca_png": _pca_png(real_x, synth_x),
        "correlation_png": _correlation_png(
            result, real_x, np.asarray(real_train.labels), synth_x, np.asarray(synthetic.labels)
        ),
        "report_md": _report_markdown(result, title=title, extra=extra, privacy=privacy).encode("utf-8"),
        "metrics_json": (
            json.dumps(
                {"title": title, **result.to_dict(), "extra": _finite(extra)},
                indent=2,
                default=_json_default,
                allow_nan=False,
            )
            + "\n"
        ).encode("utf-8"),
    }

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for key, name in REPORT_FILES.items():  # metrics.json last: its presence marks completion
        path = out / name
        write_bytes_atomic(path, contents[key])
        written[key] = path
    logger.info("wrote evaluation report to %s", out)
    return written


# --------------------------------------------------------------------------- helpers


def _finite(obj: Any) -> Any:
    """``obj`` with non-finite floats (which JSON cannot hold) replaced by ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"extra: value of type {type(obj).__name__} is not JSON-serializable")


def _check_inputs(result: EvaluationResult, real_train: ExpressionData, synthetic: ExpressionData) -> None:
    for name, data, n in (
        ("real_train", real_train, result.n_real_train),
        ("synthetic", synthetic, result.n_synthetic),
    ):
        if data.n_samples != n:
            raise InputError(
                f"{data.source} ({name}): {data.n_samples} samples, but the evaluation used {n}."
            )
        if set(data.gene_names) != set(result.gene_names) or data.n_genes != len(result.gene_names):
            raise InputError(f"{data.source} ({name}): genes differ from those of the evaluation.")


def _aligned_values(data: ExpressionData, genes: tuple[str, ...]) -> np.ndarray:
    values = np.asarray(data.values, dtype=np.float64)
    if tuple(data.gene_names) == tuple(genes):
        return values
    position = {g: i for i, g in enumerate(data.gene_names)}
    return values[:, [position[g] for g in genes]]


def _wasserstein_csv(result: EvaluationResult) -> str:
    lines = ["gene,wasserstein"]
    for gene, value in zip(result.gene_names, np.asarray(result.wasserstein_per_gene)):
        quoted = '"' + gene.replace('"', '""') + '"' if any(c in gene for c in ',"\n') else gene
        lines.append(f"{quoted},{float(value):.10g}")
    return "\n".join(lines) + "\n"


def _new_figure(width: float, height: float):
    """A figure bound to the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _identity_scatter(ax, x: np.ndarray, y: np.ndarray, *, label: str) -> None:
    ax.scatter(x, y, s=6, alpha=0.5, color=_SYNTH_COLOR, linewidths=0)
    finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"real {label}")
    ax.set_ylabel(f"synthetic {label}")
    ax.set_title(f"per-gene {label}")


def _marginal_fidelity_png(result: EvaluationResult, real_x: np.ndarray, synth_x: np.ndarray) -> bytes:
    fig = _new_figure(13.5, 4.2)
    ax_mean, ax_std, ax_hist = fig.subplots(1, 3)
    _identity_scatter(ax_mean, real_x.mean(axis=0), synth_x.mean(axis=0), label="mean")
    _identity_scatter(ax_std, real_x.std(axis=0), synth_x.std(axis=0), label="std")
    w = np.asarray(result.wasserstein_per_gene, dtype=np.float64)
    ax_hist.hist(w, bins=min(50, max(5, w.size // 10)), color=_REAL_COLOR)
    ax_hist.axvline(result.wasserstein_mean, color="black", linestyle="--", linewidth=0.8)
    ax_hist.set_xlabel("Wasserstein distance")
    ax_hist.set_ylabel("genes")
    ax_hist.set_title(f"per-gene Wasserstein (mean {result.wasserstein_mean:.4g})")
    fig.tight_layout()
    return _png_bytes(fig)


def _pca_png(real_x: np.ndarray, synth_x: np.ndarray) -> bytes:
    from sklearn.decomposition import PCA

    n_comp = min(2, real_x.shape[0], real_x.shape[1])
    # Randomized SVD with a fixed seed: deterministic, and ~10x faster than a
    # full SVD at 1,000 x 1,000 for the two components drawn.
    solver = "randomized" if min(real_x.shape) > 10 else "full"
    pca = PCA(n_components=n_comp, svd_solver=solver, random_state=0).fit(real_x)
    real_p, synth_p = pca.transform(real_x), pca.transform(synth_x)
    if n_comp < 2:
        real_p = np.column_stack([real_p, np.zeros(real_p.shape[0])])
        synth_p = np.column_stack([synth_p, np.zeros(synth_p.shape[0])])
    ratio = list(pca.explained_variance_ratio_) + [0.0] * (2 - n_comp)
    fig = _new_figure(6.0, 5.0)
    ax = fig.subplots()
    ax.scatter(real_p[:, 0], real_p[:, 1], s=8, alpha=0.5, color=_REAL_COLOR, linewidths=0,
               label=f"real training ({real_x.shape[0]})")
    ax.scatter(synth_p[:, 0], synth_p[:, 1], s=8, alpha=0.5, color=_SYNTH_COLOR, linewidths=0,
               label=f"synthetic ({synth_x.shape[0]})")
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of real variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% of real variance)")
    ax.set_title("PCA fitted on the real training data")
    ax.legend(loc="best", markerscale=2)
    fig.tight_layout()
    return _png_bytes(fig)


def _module_order(r: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering on ``1 - r`` (co-expressed genes side by side)."""
    if r.shape[0] < 3:
        return np.arange(r.shape[0])
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    dist = np.clip(1.0 - r, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    return leaves_list(linkage(squareform(dist, checks=False), method="average"))


def _correlation_png(
    result: EvaluationResult,
    real_x: np.ndarray,
    real_y: np.ndarray,
    synth_x: np.ndarray,
    synth_y: np.ndarray,
) -> bytes:
    """Within-class and pooled correlation, real vs synthetic: heatmaps and pairwise scatter."""
    from .coexpression import gene_connectivity, standardized

    d = real_x.shape[1]
    fig = _new_figure(15.0, 9.5)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(2, 3)
    if d < 2:
        for ax in axes.ravel():
            ax.set_axis_off()
        axes[0, 0].text(0.0, 0.5, "fewer than 2 genes: no correlations", fontsize=12)
        return _png_bytes(fig)
    # Genes: the most connected within class in the real data, in module order.
    connectivity = gene_connectivity(real_x, real_y)
    genes = np.sort(np.argsort(-connectivity, kind="stable")[: min(_HEATMAP_GENES, d)])
    n_pairs = d * (d - 1) // 2
    # Scatter: all pairs of at most _SCATTER_GENES random genes (19,900 pairs).
    scatter_genes = np.sort(np.random.default_rng(0).permutation(d)[: min(_SCATTER_GENES, d)])
    upper = np.triu_indices(scatter_genes.size, 1)
    order = None
    for row, scope in enumerate(("within", "pooled")):
        labels_r, labels_s = (real_y, synth_y) if scope == "within" else (None, None)
        z_real, _, _ = standardized(real_x, labels_r)
        z_syn, _, _ = standardized(synth_x, labels_s)
        r_real = np.clip(z_real[:, genes].T @ z_real[:, genes], -1, 1)
        r_syn = np.clip(z_syn[:, genes].T @ z_syn[:, genes], -1, 1)
        if order is None:
            order = _module_order(r_real)
        comparison = result.coexpression_scope(scope)
        title = "within class" if scope == "within" else "pooled"
        image = None
        for col, (name, r) in enumerate((("real training", r_real), ("synthetic", r_syn))):
            ax = axes[row, col]
            image = ax.imshow(r[np.ix_(order, order)], cmap="RdBu_r", vmin=-1.0, vmax=1.0,
                              interpolation="nearest")
            ax.set_title(f"{name}, {title}")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{len(genes)} most connected real genes, module order")
        fig.colorbar(image, ax=list(axes[row, :2]), shrink=0.8, label="Pearson r")
        pr = (z_real[:, scatter_genes].T @ z_real[:, scatter_genes])[upper]
        ps = (z_syn[:, scatter_genes].T @ z_syn[:, scatter_genes])[upper]
        ax = axes[row, 2]
        ax.scatter(pr, ps, s=3, alpha=0.25, color=_SYNTH_COLOR, linewidths=0)
        ax.plot([-1, 1], [-1, 1], color="black", linewidth=0.8, linestyle="--")
        for t in (-0.3, 0.3):
            ax.axvline(t, color="grey", linewidth=0.5, linestyle=":")
            ax.axhline(t, color="grey", linewidth=0.5, linestyle=":")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_xlabel(f"real r ({len(pr):,} of {n_pairs:,} gene pairs, {scatter_genes.size} genes)")
        ax.set_ylabel("synthetic r")
        sim = None if comparison is None else comparison.similarity
        ax.set_title(f"{title}: similarity {_fmt(sim, 3)}")
    return _png_bytes(fig)


def _flatten(obj: dict[str, Any], prefix: str = "", depth: int = 3) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` rows of nested dicts, up to ``depth`` levels (deeper: the dict)."""
    rows: list[tuple[str, Any]] = []
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth > 1:
            rows += _flatten(value, f"{name}.", depth - 1)
        else:
            rows.append((name, value))
    return rows


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _challenge_markdown(r: EvaluationResult) -> list[str]:
    """The CAMDA 2025 challenge metrics: fidelity, privacy and co-expression tables."""
    lines = [
        "## Challenge metrics (CAMDA 2025 / ELSA Health Privacy Challenge)",
        "",
        "| metric | value | meaning |",
        "| --- | --- | --- |",
        f"| MMD to real training | {_fmt(r.mmd_train)} | unbiased squared RBF-MMD (gamma = 1/genes), "
        "synthetic vs real training records (0 = same distribution; can be slightly negative) |",
        f"| MMD to real test | {_fmt(r.mmd_test)} | the same against the held-out records |",
        f"| MMD real training to real test | {_fmt(r.mmd_train_test)} | reference: two real samples |",
        f"| discriminative score | {_fmt(r.discriminative_score)} | F1 (class real) of a logistic regression "
        "telling real from synthetic, on its 30 % hold-out plus the real test records |",
        f"| discriminator AUC | {_fmt(r.discriminative_auc)} | ROC AUC of the same classifier "
        "(0.5 = indistinguishable, 1 = separable) |",
        f"| relative DCR | {_fmt(r.dcr_relative, 3)} | DCR synthetic / DCR real test (target 1; "
        "below 1: closer to the training records than new real records are) |",
        f"| membership inference AUC (worst case) | {_fmt(r.mia_auc, 3)} | largest AUC of the attacks "
        "below, real training (members) vs real test records (0.5 = no detectable leak) |",
        f"| TPR at FPR 0.1 (worst case) | "
        f"{_fmt(None if r.mia is None else r.mia.worst_tpr_at_fpr_01, 3)} | share of members caught "
        "while 10 % of non-members are accused (0.1 = chance) |",
        "",
    ]
    if r.mmd_max_samples and max(r.n_real_train, r.n_real_test, r.n_synthetic) > r.mmd_max_samples:
        lines += [f"MMD and the discriminative score used random subsets of at most "
                  f"{r.mmd_max_samples} records per set.", ""]
    if r.coexpression:
        lines += [
            "## Co-expression",
            "",
            "Edges of the Pearson correlation network: gene pairs with |r| above the threshold and "
            "p < "
            f"{r.coexpression[0].alpha:g}; a synthetic edge recovers a real one when its sign matches. "
            "*Within class* correlates the class-centred records (each class's mean removed), so that "
            "genes which only differ between classes do not count. Real fraction = share of gene pairs "
            "that are real edges (the precision of guessing).",
            "",
            "| scope | \\|r\\| > | real edges | real fraction | synthetic edges | recovered | recall | "
            "precision |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for comparison in r.coexpression:
            for e in comparison.edges:
                lines.append(
                    f"| {comparison.scope} | {e.threshold:g} | {e.real_edges} | {_fmt(e.real_fraction)} | "
                    f"{e.synthetic_edges} | {e.recovered} | {_fmt(e.recall)} | {_fmt(e.precision)} |"
                )
        lines += ["", "| scope | similarity of correlation matrices | mean \\|r real - r synthetic\\| |",
                  "| --- | --- | --- |"]
        for comparison in r.coexpression:
            lines.append(f"| {comparison.scope} | {_fmt(comparison.similarity)} | "
                         f"{_fmt(comparison.mean_abs_difference)} |")
        lines.append("")
    if r.mia is not None:
        lines += [
            "## Membership inference",
            "",
            f"Members: {r.mia.n_members} real training records; non-members: {r.mia.n_non_members} real "
            "test records, also the attacker's reference data (each target scored without itself).",
            "",
            "| attack | AUC | TPR at FPR 0.1 | score |",
            "| --- | --- | --- | --- |",
        ]
        meaning = {
            "dcr": "minus the distance to the closest synthetic record (GAN-leaks)",
            "dcr_calibrated": "distance to the closest reference record minus that to the closest "
                              "synthetic record (GAN-leaks calibrated)",
            "mc": "share of synthetic records within the median closest distance (Monte-Carlo)",
            "domias_kde": f"synthetic over reference density, Gaussian KDE on {r.mia.pca_components} "
                          "principal components (DOMIAS)",
        }
        for a in r.mia.attacks:
            lines.append(f"| {a.name} | {_fmt(a.auc, 3)} | {_fmt(a.tpr_at_fpr_01, 3)} | "
                         f"{meaning.get(a.name, '')} |")
        lines.append("")
    return lines


def _report_markdown(result: EvaluationResult, *, title: str, extra: dict[str, Any],
                     privacy: str | None = None) -> str:
    r = result
    lines = [
        f"# {title}",
        "",
        f"Real training records: {r.n_real_train}; real held-out test records: {r.n_real_test}; "
        f"synthetic records: {r.n_synthetic}; genes: {r.n_genes}; classes: {len(r.label_names)}.",
        "",
        *([f"**Privacy.** {privacy} This report is computed from the real data and is not "
           "differentially private.", ""] if privacy else []),
        "## Metrics",
        "",
        "| metric | value | meaning |",
        "| --- | --- | --- |",
        f"| TSTR accuracy | {_fmt(r.tstr_accuracy)} | logistic regression trained on synthetic, "
        "accuracy on the real test set (higher is better) |",
        f"| TSTR weighted F1 | {_fmt(r.tstr_f1_weighted)} | same predictions, support-weighted F1 |",
        f"| TRTR accuracy | {_fmt(r.trtr_accuracy)} | same model trained on the real training set: "
        "the ceiling TSTR aims at |",
        f"| majority-class rate | {_fmt(r.majority_rate)} | accuracy of always predicting the "
        "test set's most common class: the floor |",
        f"| Wasserstein (mean over genes) | {_fmt(r.wasserstein_mean)} | 1-D distance between each "
        "gene's real training and synthetic values, in expression units (lower is better) |",
        f"| DE-TPR | {_fmt(r.de_tpr)} | share of the real DE genes (rank-sum, p < {r.de_alpha:g}, per "
        "class pair) found DE in the same direction in the synthetic data, mean over pairs |",
        f"| DE-TPR up / down | {_fmt(r.de_tpr_up)} / {_fmt(r.de_tpr_down)} | the same for up- and "
        "down-regulated genes separately |",
        f"| DCR (synthetic to real training) | {_fmt(r.dcr_mean, 3)} | mean Euclidean distance of a "
        "synthetic record to its nearest real training record (smaller = closer to real records) |",
        f"| DCR (real test to real training) | {_fmt(r.dcr_holdout_mean, 3)} | the same for unseen "
        "real records: the reference DCR is judged against |",
        "",
    ]
    lines += _challenge_markdown(r)
    if r.de_per_pair:
        lines += [
            "## Differential expression per class pair",
            "",
            "`up` means higher in class A. Real DE genes are from the real training set.",
            "",
            "| class A | class B | real up | real down | synthetic up | synthetic down | "
            "TPR up | TPR down | TPR |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for p in r.de_per_pair:
            lines.append(
                f"| {p['class_a']} | {p['class_b']} | {p['real_up']} | {p['real_down']} | "
                f"{p['synthetic_up']} | {p['synthetic_down']} | {_fmt(p['tpr_up'])} | "
                f"{_fmt(p['tpr_down'])} | {_fmt(p['tpr'])} |"
            )
        lines.append("")
    else:
        lines += ["No class pair had at least two real and two synthetic records per class: "
                  "DE-TPR is undefined.", ""]
    lines += [
        "## Plots and files",
        "",
        "- `marginal_fidelity.png`: per-gene mean and standard deviation, real training vs synthetic "
        "(the dashed line is equality), and the histogram of per-gene Wasserstein distances.",
        "- `pca.png`: real training and synthetic records on the first two principal components of "
        "the real training data.",
        "- `correlation.png`: gene-gene Pearson correlation within class (class means removed) and "
        "pooled: heatmaps of the real data's most connected genes in module order (real, synthetic), "
        "and real vs synthetic r of gene pairs.",
        "- `wasserstein_per_gene.csv`: the distance of every gene; `metrics.json`: all figures above "
        "and the run parameters.",
        "",
        "## What is and is not private",
        "",
        "- The **synthetic data** is differentially private with respect to the real training "
        "records within the run's privacy budget, except where the run revealed exact statistics "
        "(in paper mode the per-gene bin means are released without noise).",
        "- **This report is not private.** Every figure in it is computed from the real data: "
        "TRTR, the majority rate and TSTR use the real test set; Wasserstein, DE and DCR use the real "
        "training set; the plots show real per-gene means, standard deviations, correlations and a PCA "
        "of the real training records; the membership attacks score real records. Keep it with the "
        "data holders; do not publish it beside the synthetic data.",
        "- DCR is a heuristic of output privacy, not a guarantee: a synthetic DCR well below the "
        "holdout DCR suggests records copied or memorised from the training set; similar values do "
        "not prove privacy.",
        "- The membership attacks are empirical: an AUC near 0.5 means these attacks found nothing, "
        "not that no attack can; the differential-privacy guarantee is the bound that holds against "
        "every attack.",
        "",
    ]
    if extra:
        lines += ["## Run parameters", "", "| parameter | value |", "| --- | --- |"]
        for key, value in _flatten(extra):
            text = value if isinstance(value, str) else json.dumps(_finite(value), default=_json_default)
            lines.append(f"| {key} | {text.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
