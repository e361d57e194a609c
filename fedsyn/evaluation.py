"""Quality and privacy metrics of a synthetic expression dataset.

The four metrics of the paper (Filienko, De Cock, Pentyala, "Metrics"; the
centralized method of Chen et al. 2024 uses the same ones):

* **TSTR** (train on synthetic, test on real): a logistic regression trained on
  the synthetic records, scored on the real held-out test set (accuracy and
  weighted F1). Reference figures: the majority-class rate of the test set and
  TRTR (the same model trained on the real training set).
* **Wasserstein**: mean over genes of the 1-D Wasserstein-1 distance between the
  real training values and the synthetic values of the gene.
* **DE-TPR**: for every pair of classes, a Wilcoxon rank-sum test per gene on
  the real training data and on the synthetic data; the fraction of the real
  differentially expressed (DE) genes that the synthetic data finds DE in the
  same direction, averaged over class pairs.
* **DCR** (distance to closest record): mean Euclidean distance from each
  synthetic record to its nearest real training record. Smaller means the
  synthetic records sit closer to real ones (more leakage risk). The same
  figure for the real test records (``dcr_holdout_mean``) is the natural
  reference: records never seen by the generator.

The exact definitions, and how they differ from the authors' code, are in
``docs/evaluation.md``. Every figure computed here depends on the real data:
none of them is covered by the differential-privacy guarantee of the synthetic
data, so an evaluation is for the data holders, not for publication.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from .data import ExpressionData
from .errors import InputError

__all__ = ["EvaluationResult", "evaluate", "wasserstein_per_gene", "rank_sum_z", "de_genes", "dcr"]

logger = logging.getLogger(__name__)

_MAX_NAMES_IN_MESSAGE = 10
# Elements of the (chunk x n_real) distance block computed at once by dcr().
_DCR_BLOCK_ELEMENTS = 4_000_000
# Elements of the ((n + m) x genes) block sorted at once by wasserstein_per_gene().
_WASSERSTEIN_BLOCK_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class EvaluationResult:
    """All metrics of one synthetic dataset against its real training and test sets.

    Attributes
    ----------
    tstr_accuracy : float
        Accuracy on the real test set of a logistic regression trained on the
        synthetic data.
    tstr_f1_weighted : float
        Support-weighted F1 of the same predictions.
    majority_rate : float
        Frequency of the most common class in the real test set (the accuracy
        of always predicting it).
    trtr_accuracy : float or None
        Accuracy of the same model trained on the real training set (the
        ceiling TSTR aims at); ``None`` when not computed.
    trtr_f1_weighted : float or None
        Weighted F1 of the TRTR model; ``None`` when not computed.
    wasserstein_mean : float
        Mean over genes of ``wasserstein_per_gene``.
    wasserstein_per_gene : ndarray of float64, shape (d,)
        1-D Wasserstein-1 distance between real training and synthetic values
        of every gene, in the order of ``gene_names``.
    de_tpr : float or None
        Mean over evaluated class pairs of the pair's DE true-positive rate;
        ``None`` when no pair has a real DE gene.
    de_tpr_up, de_tpr_down : float or None
        The same restricted to up- / down-regulated genes (mean over pairs with
        at least one real up- / down-regulated gene).
    de_per_pair : list of dict
        One entry per class pair tested (see :func:`evaluate`).
    dcr_mean : float
        Mean Euclidean distance from each synthetic record to its nearest real
        training record.
    dcr_holdout_mean : float
        Mean Euclidean distance from each real test record to its nearest real
        training record (reference for ``dcr_mean``).
    n_real_train, n_real_test, n_synthetic, n_genes : int
        Sizes of the inputs.
    de_alpha : float
        Significance level of the rank-sum tests.
    gene_names : tuple of str
        Genes in the order of ``wasserstein_per_gene``.
    label_names : tuple of str
        The label domain.
    """

    tstr_accuracy: float
    tstr_f1_weighted: float
    majority_rate: float
    trtr_accuracy: float | None
    trtr_f1_weighted: float | None
    wasserstein_mean: float
    wasserstein_per_gene: np.ndarray = field(repr=False, compare=False)
    de_tpr: float | None = None
    de_tpr_up: float | None = None
    de_tpr_down: float | None = None
    de_per_pair: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)
    dcr_mean: float = math.nan
    dcr_holdout_mean: float = math.nan
    n_real_train: int = 0
    n_real_test: int = 0
    n_synthetic: int = 0
    n_genes: int = 0
    de_alpha: float = 0.05
    gene_names: tuple[str, ...] = field(default=(), repr=False, compare=False)
    label_names: tuple[str, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (plain floats/ints/str, ``None`` for undefined).

        The per-gene Wasserstein distances are summarised (median, max) rather
        than listed; :func:`fedsyn.report.write_report` writes them to a CSV.
        """
        w = np.asarray(self.wasserstein_per_gene, dtype=np.float64)
        return {
            "tstr_accuracy": _num(self.tstr_accuracy),
            "tstr_f1_weighted": _num(self.tstr_f1_weighted),
            "majority_rate": _num(self.majority_rate),
            "trtr_accuracy": _num(self.trtr_accuracy),
            "trtr_f1_weighted": _num(self.trtr_f1_weighted),
            "wasserstein_mean": _num(self.wasserstein_mean),
            "wasserstein_median": _num(float(np.median(w))) if w.size else None,
            "wasserstein_max": _num(float(np.max(w))) if w.size else None,
            "de_tpr": _num(self.de_tpr),
            "de_tpr_up": _num(self.de_tpr_up),
            "de_tpr_down": _num(self.de_tpr_down),
            "de_alpha": _num(self.de_alpha),
            "de_per_pair": [{k: _num(v) for k, v in pair.items()} for pair in self.de_per_pair],
            "dcr_mean": _num(self.dcr_mean),
            "dcr_holdout_mean": _num(self.dcr_holdout_mean),
            "n_real_train": int(self.n_real_train),
            "n_real_test": int(self.n_real_test),
            "n_synthetic": int(self.n_synthetic),
            "n_genes": int(self.n_genes),
            "label_names": list(self.label_names),
        }


def _num(value: Any) -> Any:
    """Plain Python number for JSON; NaN/inf become ``None``; other values pass."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------- validation


def _check_compatible(
    real_train: ExpressionData, real_test: ExpressionData, synthetic: ExpressionData
) -> tuple[ExpressionData, ExpressionData]:
    """Check genes, labels and values; return test and synthetic in train's gene order."""
    reference = real_train
    out = []
    for name, data in (("real test", real_test), ("synthetic", synthetic)):
        if data.label_names != reference.label_names:
            raise InputError(
                f"{data.source} ({name}): label domain {list(data.label_names)} differs from the "
                f"real training set's {list(reference.label_names)} ({reference.source})."
            )
        if data.gene_names != reference.gene_names:
            ref_set, this_set = set(reference.gene_names), set(data.gene_names)
            if len(this_set) != len(data.gene_names):
                raise InputError(f"{data.source} ({name}): duplicate gene names.")
            missing = [g for g in reference.gene_names if g not in this_set]
            extra = [g for g in data.gene_names if g not in ref_set]
            if missing or extra:
                raise InputError(
                    f"{data.source} ({name}): genes differ from the real training set "
                    f"({reference.source}): {len(missing)} missing {_names(missing)}, "
                    f"{len(extra)} unexpected {_names(extra)}."
                )
            # Same genes in another order: align to the training set's order.
            logger.info("%s (%s): reordering genes to the training set's order", data.source, name)
            position = {g: i for i, g in enumerate(data.gene_names)}
            data = data.subset(genes=[position[g] for g in reference.gene_names])
        out.append(data)
    for name, data in (("real training", real_train), ("real test", out[0]), ("synthetic", out[1])):
        if data.n_samples == 0:
            raise InputError(f"{data.source} ({name}): no samples.")
        if data.n_genes == 0:
            raise InputError(f"{data.source} ({name}): no genes.")
        finite = np.isfinite(np.asarray(data.values, dtype=np.float64))
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise InputError(
                f"{data.source} ({name}): non-finite value at sample {data.sample_ids[row]!r}, "
                f"gene {data.gene_names[col]!r}."
            )
    return out[0], out[1]


def _names(names: list[str]) -> str:
    shown = names[:_MAX_NAMES_IN_MESSAGE]
    more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return "[" + ", ".join(repr(n) for n in shown) + more + "]"


# --------------------------------------------------------------------------- metrics


def wasserstein_per_gene(real: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """1-D Wasserstein-1 distance between the columns of two matrices.

    Equal to ``scipy.stats.wasserstein_distance(real[:, j], synthetic[:, j])``
    for every column ``j`` (the integral of ``|F_real - F_synth|`` over the
    values), computed for all columns at once.

    Parameters
    ----------
    real : ndarray, shape (n, d)
    synthetic : ndarray, shape (m, d)

    Returns
    -------
    ndarray of float64, shape (d,)
    """
    real = np.asarray(real, dtype=np.float64)
    synthetic = np.asarray(synthetic, dtype=np.float64)
    n, d = real.shape
    m = synthetic.shape[0]
    is_real = np.concatenate([np.ones(n), np.zeros(m)])
    out = np.empty(d, dtype=np.float64)
    step = max(1, _WASSERSTEIN_BLOCK_ELEMENTS // (n + m))
    for lo in range(0, d, step):
        hi = min(d, lo + step)
        both = np.concatenate([real[:, lo:hi], synthetic[:, lo:hi]], axis=0)
        order = np.argsort(both, axis=0, kind="stable")
        values = np.take_along_axis(both, order, axis=0)
        from_real = is_real[order]
        # Empirical CDFs at each sorted value; tied values contribute zero width,
        # so the order among ties does not matter.
        cdf_real = np.cumsum(from_real, axis=0)[:-1] / n
        cdf_synth = np.cumsum(1.0 - from_real, axis=0)[:-1] / m
        out[lo:hi] = np.sum(np.abs(cdf_real - cdf_synth) * np.diff(values, axis=0), axis=0)
    return out


def rank_sum_z(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilcoxon rank-sum statistic and two-sided p-value of every column.

    The same normal approximation as :func:`scipy.stats.ranksums` (average
    ranks for ties, no tie correction of the variance), vectorized over genes.

    Parameters
    ----------
    x : ndarray, shape (n1, d)
        Samples of the first group.
    y : ndarray, shape (n2, d)
        Samples of the second group.

    Returns
    -------
    z : ndarray, shape (d,)
        Positive where ``x`` tends to be larger than ``y``.
    p : ndarray, shape (d,)
        Two-sided p-values.
    """
    from scipy.special import ndtr
    from scipy.stats import rankdata

    n1, n2 = x.shape[0], y.shape[0]
    ranks = rankdata(np.concatenate([x, y], axis=0), axis=0)
    s = ranks[:n1].sum(axis=0)
    expected = n1 * (n1 + n2 + 1) / 2.0
    z = (s - expected) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    p = 2.0 * ndtr(-np.abs(z))
    return z, p


def de_genes(
    x: np.ndarray, y: np.ndarray, *, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Genes differentially expressed between two groups.

    Parameters
    ----------
    x, y : ndarray, shapes (n1, d) and (n2, d)
        The two groups' samples.
    alpha : float, default 0.05
        A gene is DE when its two-sided rank-sum p-value is ``< alpha``.

    Returns
    -------
    up, down : ndarray of bool, shape (d,)
        DE with ``x`` higher than ``y`` (``z > 0``) / lower (``z < 0``).
    """
    z, p = rank_sum_z(x, y)
    significant = p < alpha
    return significant & (z > 0), significant & (z < 0)


def dcr(query: np.ndarray, reference: np.ndarray, *, candidates: int = 4) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row.

    Exact: squared distances are computed blockwise as
    ``|q|^2 + |r|^2 - 2 q.r`` on centered data to shortlist the ``candidates``
    nearest reference rows, whose distances are then recomputed directly (so a
    query equal to a reference row gets exactly 0).

    Parameters
    ----------
    query : ndarray, shape (m, d)
    reference : ndarray, shape (n, d)
    candidates : int, default 4
        Shortlist size per query row.

    Returns
    -------
    ndarray of float64, shape (m,)
    """
    query = np.asarray(query, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    n = reference.shape[0]
    k = min(candidates, n)
    center = reference.mean(axis=0)
    ref_c = reference - center
    ref_sq = np.einsum("ij,ij->i", ref_c, ref_c)
    out = np.empty(query.shape[0], dtype=np.float64)
    step = max(1, _DCR_BLOCK_ELEMENTS // max(n, 1))
    for lo in range(0, query.shape[0], step):
        q = query[lo : lo + step] - center
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + ref_sq[None, :] - 2.0 * (q @ ref_c.T)
        if k < n:
            short = np.argpartition(d2, k - 1, axis=1)[:, :k]
        else:
            short = np.broadcast_to(np.arange(n), (q.shape[0], n))
        diff = ref_c[short] - q[:, None, :]
        out[lo : lo + step] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff).min(axis=1))
    return out


def _fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, random_state: int | None
) -> np.ndarray:
    """Standardize on the training data, fit logistic regression, predict the test data."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y_train)
    if classes.size == 1:
        logger.warning("training data has a single class (%d): predicting it everywhere", classes[0])
        return np.full(x_test.shape[0], classes[0], dtype=y_train.dtype)
    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(max_iter=2000, random_state=random_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(scaler.transform(x_train), y_train)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        logger.warning("logistic regression did not converge in 2000 iterations")
    return model.predict(scaler.transform(x_test))


def _classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return (
        float(accuracy_score(y_true, y_pred)),
        float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
    )


def _de_tpr(
    real: ExpressionData, synthetic: ExpressionData, *, alpha: float
) -> tuple[float | None, float | None, float | None, list[dict[str, Any]]]:
    """DE preservation over all class pairs with >= 2 samples on both sides."""
    n_real = np.bincount(real.labels, minlength=real.n_labels)
    n_synth = np.bincount(synthetic.labels, minlength=synthetic.n_labels)
    usable = [c for c in range(real.n_labels) if n_real[c] >= 2 and n_synth[c] >= 2]
    skipped = [real.label_names[c] for c in range(real.n_labels) if c not in usable and n_real[c] > 0]
    if skipped:
        logger.info("DE-TPR: classes without >= 2 real and >= 2 synthetic samples: %s", skipped)
    rv, sv = np.asarray(real.values, dtype=np.float64), np.asarray(synthetic.values, dtype=np.float64)
    pairs: list[dict[str, Any]] = []
    for a, b in combinations(usable, 2):
        r_up, r_down = de_genes(rv[real.labels == a], rv[real.labels == b], alpha=alpha)
        s_up, s_down = de_genes(sv[synthetic.labels == a], sv[synthetic.labels == b], alpha=alpha)
        tp_up, tp_down = int(np.sum(r_up & s_up)), int(np.sum(r_down & s_down))
        n_up, n_down = int(r_up.sum()), int(r_down.sum())
        pairs.append(
            {
                "class_a": real.label_names[a],
                "class_b": real.label_names[b],
                "n_real_a": int(n_real[a]),
                "n_real_b": int(n_real[b]),
                "n_synthetic_a": int(n_synth[a]),
                "n_synthetic_b": int(n_synth[b]),
                "real_up": n_up,
                "real_down": n_down,
                "synthetic_up": int(s_up.sum()),
                "synthetic_down": int(s_down.sum()),
                "true_up": tp_up,
                "true_down": tp_down,
                "tpr_up": tp_up / n_up if n_up else None,
                "tpr_down": tp_down / n_down if n_down else None,
                "tpr": (tp_up + tp_down) / (n_up + n_down) if n_up + n_down else None,
            }
        )

    def mean_of(key: str) -> float | None:
        vals = [p[key] for p in pairs if p[key] is not None]
        return float(np.mean(vals)) if vals else None

    return mean_of("tpr"), mean_of("tpr_up"), mean_of("tpr_down"), pairs


def evaluate(
    real_train: ExpressionData,
    real_test: ExpressionData,
    synthetic: ExpressionData,
    *,
    de_alpha: float = 0.05,
    random_state: int | None = 0,
    compute_trtr: bool = True,
) -> EvaluationResult:
    """Evaluate a synthetic dataset against the real data it was generated from.

    Parameters
    ----------
    real_train : ExpressionData
        The real records the synthesizer saw (reference of Wasserstein, DE and
        DCR; TRTR training set).
    real_test : ExpressionData
        Held-out real records (TSTR/TRTR test set; DCR holdout reference).
    synthetic : ExpressionData
        The synthetic records. All three must share the label domain and the
        genes; genes in another order are aligned to ``real_train``'s order.
    de_alpha : float, default 0.05
        Significance level of the per-gene rank-sum tests of DE-TPR.
    random_state : int or None, default 0
        Seed passed to the logistic regression (the default lbfgs solver is
        deterministic; the seed matters only for randomized solvers).
    compute_trtr : bool, default True
        Also train on the real training set (the TRTR reference).

    Returns
    -------
    EvaluationResult
        ``de_per_pair`` lists, per class pair ``(class_a, class_b)`` with at
        least two real training and two synthetic samples in each class, the
        counts of real/synthetic up- and down-regulated genes (``up``: higher
        in ``class_a``), the true positives and the pair's TPRs (``None`` when
        the real data has no DE gene of that kind).

    Raises
    ------
    InputError
        Differing genes (named) or label domains, empty inputs, non-finite
        values, or ``de_alpha`` outside (0, 1).
    """
    if not 0.0 < de_alpha < 1.0:
        raise InputError(f"de_alpha must lie in (0, 1), got {de_alpha}.")
    real_test, synthetic = _check_compatible(real_train, real_test, synthetic)
    x_train = np.asarray(real_train.values, dtype=np.float64)
    x_test = np.asarray(real_test.values, dtype=np.float64)
    x_synth = np.asarray(synthetic.values, dtype=np.float64)
    y_test = np.asarray(real_test.labels)

    y_pred = _fit_predict(x_synth, np.asarray(synthetic.labels), x_test, random_state=random_state)
    tstr_acc, tstr_f1 = _classification_scores(y_test, y_pred)
    trtr_acc = trtr_f1 = None
    if compute_trtr:
        y_ref = _fit_predict(x_train, np.asarray(real_train.labels), x_test, random_state=random_state)
        trtr_acc, trtr_f1 = _classification_scores(y_test, y_ref)
    majority = float(np.bincount(y_test).max() / y_test.size)

    w = wasserstein_per_gene(x_train, x_synth)
    de_tpr, de_up, de_down, pairs = _de_tpr(real_train, synthetic, alpha=de_alpha)
    dcr_synth = dcr(x_synth, x_train)
    dcr_holdout = dcr(x_test, x_train)

    result = EvaluationResult(
        tstr_accuracy=tstr_acc,
        tstr_f1_weighted=tstr_f1,
        majority_rate=majority,
        trtr_accuracy=trtr_acc,
        trtr_f1_weighted=trtr_f1,
        wasserstein_mean=float(np.mean(w)),
        wasserstein_per_gene=w,
        de_tpr=de_tpr,
        de_tpr_up=de_up,
        de_tpr_down=de_down,
        de_per_pair=pairs,
        dcr_mean=float(np.mean(dcr_synth)),
        dcr_holdout_mean=float(np.mean(dcr_holdout)),
        n_real_train=real_train.n_samples,
        n_real_test=real_test.n_samples,
        n_synthetic=synthetic.n_samples,
        n_genes=real_train.n_genes,
        de_alpha=de_alpha,
        gene_names=tuple(real_train.gene_names),
        label_names=tuple(real_train.label_names),
    )
    logger.info(
        "evaluation: TSTR accuracy %.4f (TRTR %s, majority %.4f), Wasserstein %.4f, DE-TPR %s, DCR %.3f",
        tstr_acc,
        "n/a" if trtr_acc is None else f"{trtr_acc:.4f}",
        majority,
        result.wasserstein_mean,
        "n/a" if de_tpr is None else f"{de_tpr:.4f}",
        result.dcr_mean,
    )
    return result
