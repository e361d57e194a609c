"""Gene-gene co-expression networks of real and synthetic data, compared edge by edge.

The CAMDA 2025 / ELSA Health Privacy Challenge scores co-expression preservation
with hCoCena (``src/evaluation/bio/coexpression.R`` of PMBio/Health-Privacy-Challenge,
adapted from Chen et al. 2024): a Pearson correlation network of the real
training data and one of the synthetic data, an edge wherever a gene pair's
correlation passes the cut-off (0, 0.3 or 0.5) with an (unadjusted) p-value
below 0.05; the score is the number of real edges the synthetic network
contains (recall = recovered / real edges) and the number it adds
(precision = recovered / synthetic edges). This module computes the same
networks without R:

* **edges**: a gene pair is an edge at threshold ``t`` when ``|r| > t`` and the
  two-sided t-test of ``r = 0`` has ``p < alpha`` (default 0.05, as hCoCena), i.e.
  ``|r| > max(t, r_crit)``; the edge carries the sign of ``r``, and a synthetic
  edge recovers a real one only with the same sign. ``sign="positive"`` keeps
  only positive correlations, as hCoCena does;
* **scopes**: ``"pooled"`` correlates all records; ``"within"`` correlates the
  class-centred records (each class's mean subtracted, classes with a single
  record dropped), the pooled within-class correlation, so that genes which
  merely differ between classes are not counted as co-expressed. Its p-value
  uses ``n - L - 1`` degrees of freedom (a partial correlation given the
  ``L - 1`` class indicators) instead of ``n - 2``;
* **similarity**: the Pearson correlation between the upper triangles of the
  real and the synthetic correlation matrices, and their mean absolute
  difference.

A gene that is constant (in a scope) has no defined correlation: its pairs
count as ``r = 0`` (never an edge, and 0 in the similarity). Everything is
computed in blocks of genes, so memory stays ``O(block x d)`` at any number of
genes. ``docs/evaluation.md`` lists where this follows the challenge and where
it departs from it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import InputError

__all__ = [
    "THRESHOLDS",
    "EdgeRecovery",
    "CoexpressionComparison",
    "compare_coexpression",
    "standardized",
    "critical_r",
    "gene_connectivity",
]

logger = logging.getLogger(__name__)

#: The challenge's correlation cut-offs.
THRESHOLDS: tuple[float, ...] = (0.0, 0.3, 0.5)

Scope = Literal["pooled", "within"]
Sign = Literal["both", "positive"]

# Gene rows per block of the correlation matrix (block x d floats per matrix).
_BLOCK_GENES = 256


@dataclass(frozen=True)
class EdgeRecovery:
    """Real edges recovered by the synthetic network at one threshold.

    Attributes
    ----------
    scope : {"pooled", "within"}
    threshold : float
        Edges have ``|r| > threshold`` (and ``p < alpha``).
    n_pairs : int
        Gene pairs compared, ``d (d - 1) / 2``.
    real_edges, synthetic_edges : int
        Edges of each network.
    recovered : int
        Real edges that are synthetic edges of the same sign.
    """

    scope: Scope
    threshold: float
    n_pairs: int
    real_edges: int
    synthetic_edges: int
    recovered: int

    @property
    def recall(self) -> float | None:
        """``recovered / real_edges``; ``None`` without real edges."""
        return self.recovered / self.real_edges if self.real_edges else None

    @property
    def precision(self) -> float | None:
        """``recovered / synthetic_edges``; ``None`` without synthetic edges."""
        return self.recovered / self.synthetic_edges if self.synthetic_edges else None

    @property
    def real_fraction(self) -> float | None:
        """Share of gene pairs that are real edges (the precision of random guessing)."""
        return self.real_edges / self.n_pairs if self.n_pairs else None

    @property
    def synthetic_fraction(self) -> float | None:
        """Share of gene pairs that are synthetic edges."""
        return self.synthetic_edges / self.n_pairs if self.n_pairs else None

    def to_dict(self) -> dict[str, Any]:
        """Plain values (``None`` where undefined)."""
        return {
            "scope": self.scope,
            "threshold": float(self.threshold),
            "n_pairs": int(self.n_pairs),
            "real_edges": int(self.real_edges),
            "synthetic_edges": int(self.synthetic_edges),
            "recovered": int(self.recovered),
            "recall": self.recall,
            "precision": self.precision,
            "real_fraction": self.real_fraction,
            "synthetic_fraction": self.synthetic_fraction,
        }


@dataclass(frozen=True)
class CoexpressionComparison:
    """Real vs synthetic co-expression in one scope.

    Attributes
    ----------
    scope : {"pooled", "within"}
    edges : tuple of EdgeRecovery
        One per threshold, in increasing order.
    similarity : float or None
        Pearson correlation between the upper triangles of the two correlation
        matrices; ``None`` when either is constant (e.g. fewer than 3 genes).
    mean_abs_difference : float or None
        Mean over gene pairs of ``|r_real - r_synthetic|``.
    alpha : float
        Significance level of the edges.
    sign : {"both", "positive"}
    """

    scope: Scope
    edges: tuple[EdgeRecovery, ...]
    similarity: float | None
    mean_abs_difference: float | None
    alpha: float
    sign: Sign

    def at(self, threshold: float) -> EdgeRecovery:
        """The :class:`EdgeRecovery` of ``threshold``."""
        for edge in self.edges:
            if np.isclose(edge.threshold, threshold):
                return edge
        raise KeyError(f"no threshold {threshold} (have {[e.threshold for e in self.edges]})")


def standardized(
    values: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, int, np.ndarray]:
    """Columns scaled so that ``z.T @ z`` is the Pearson correlation matrix.

    Parameters
    ----------
    values : ndarray, shape (n, d)
    labels : ndarray of int, shape (n,), or None, default None
        ``None``: plain (pooled) correlation. Otherwise the class-centred
        correlation: each class's mean is subtracted; records of classes with a
        single record are dropped (their residual is 0 by construction).

    Returns
    -------
    z : ndarray, shape (n_used, d)
        Centred columns of unit norm; constant columns are all zero.
    df : int
        Degrees of freedom of the t-test of a correlation: ``n - 2`` pooled,
        ``n_used - L_used - 1`` class-centred (may be < 1: then nothing is
        significant).
    constant : ndarray of bool, shape (d,)
        Columns with no variation (in this scope).
    """
    x = np.asarray(values, dtype=np.float64)
    if labels is None:
        x = x - x.mean(axis=0)
        df = x.shape[0] - 2
    else:
        labels = np.asarray(labels)
        classes, counts = np.unique(labels, return_counts=True)
        keep_classes = classes[counts >= 2]
        rows = np.isin(labels, keep_classes)
        x, lab = x[rows], labels[rows]
        x = x.copy()
        for c in keep_classes:
            members = lab == c
            x[members] -= x[members].mean(axis=0)
        df = x.shape[0] - keep_classes.size - 1
    norm = np.sqrt(np.einsum("ij,ij->j", x, x))
    # Relative tolerance: a column whose centred norm is at rounding level is constant.
    scale = np.abs(np.asarray(values, dtype=np.float64)).max(axis=0) if x.size else np.zeros(x.shape[1])
    constant = norm <= 1e-12 * np.maximum(scale, 1.0) * np.sqrt(max(x.shape[0], 1))
    z = np.divide(x, norm, out=np.zeros_like(x), where=~constant)
    return z, int(df), constant


def critical_r(df: int, alpha: float) -> float:
    """Smallest ``|r|`` with two-sided p-value ``< alpha`` at ``df`` degrees of freedom.

    The p-value of ``r`` is that of ``t = r sqrt(df / (1 - r^2))`` under Student's
    t with ``df`` degrees of freedom (what R's ``cor.test`` and Hmisc's ``rcorr``,
    used by hCoCena, compute). Returns ``inf`` for ``df < 1`` and 0 for ``alpha >= 1``.

    >>> round(critical_r(98, 0.05), 4)
    0.1966
    """
    if df < 1:
        return float("inf")
    if alpha >= 1.0:
        return 0.0
    from scipy.stats import t

    t_crit = float(t.ppf(1.0 - alpha / 2.0, df))
    return float(t_crit / np.sqrt(df + t_crit**2))


def _upper_blocks(d: int, block: int):
    """``(lo, hi)`` row blocks; each block pairs its rows with the columns to their right."""
    for lo in range(0, d, block):
        yield lo, min(d, lo + block)


def compare_coexpression(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    real_labels: np.ndarray | None = None,
    synthetic_labels: np.ndarray | None = None,
    scope: Scope = "pooled",
    thresholds: Sequence[float] = THRESHOLDS,
    alpha: float = 0.05,
    sign: Sign = "both",
) -> CoexpressionComparison:
    """Compare the co-expression networks of real and synthetic records.

    Parameters
    ----------
    real, synthetic : ndarray, shapes (n, d) and (m, d)
        Records in rows, the same genes in the same order.
    real_labels, synthetic_labels : ndarray or None, default None
        Class labels; required for ``scope="within"``.
    scope : {"pooled", "within"}, default "pooled"
        Correlation of all records, or of the class-centred records (see the
        module docstring).
    thresholds : sequence of float, default (0.0, 0.3, 0.5)
        Edge cut-offs on ``|r|``, each in ``[0, 1)``.
    alpha : float, default 0.05
        An edge also needs a two-sided p-value below ``alpha`` (hCoCena's
        filter); ``alpha=1`` drops the test.
    sign : {"both", "positive"}, default "both"
        ``"positive"``: only positive correlations are edges (hCoCena).

    Returns
    -------
    CoexpressionComparison

    Raises
    ------
    InputError
        Shapes differ, a threshold is outside ``[0, 1)``, ``alpha`` outside
        ``(0, 1]``, an unknown scope or sign, or labels missing for ``"within"``.
    """
    real = np.asarray(real, dtype=np.float64)
    synthetic = np.asarray(synthetic, dtype=np.float64)
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise InputError(
            f"real {real.shape} and synthetic {synthetic.shape} must be 2-D with the same number of genes."
        )
    if scope not in ("pooled", "within"):
        raise InputError(f"scope must be 'pooled' or 'within', got {scope!r}.")
    if sign not in ("both", "positive"):
        raise InputError(f"sign must be 'both' or 'positive', got {sign!r}.")
    if not 0.0 < alpha <= 1.0:
        raise InputError(f"alpha must lie in (0, 1], got {alpha}.")
    ts = sorted(float(t) for t in thresholds)
    if not ts or any(not 0.0 <= t < 1.0 for t in ts):
        raise InputError(f"thresholds must be non-empty and lie in [0, 1), got {list(thresholds)}.")
    if scope == "within" and (real_labels is None or synthetic_labels is None):
        raise InputError("scope='within' needs real_labels and synthetic_labels.")

    z_real, df_real, const_real = standardized(real, real_labels if scope == "within" else None)
    z_syn, df_syn, const_syn = standardized(synthetic, synthetic_labels if scope == "within" else None)
    if const_real.any() or const_syn.any():
        logger.info(
            "co-expression (%s): %d real and %d synthetic genes without variation count as r = 0",
            scope, int(const_real.sum()), int(const_syn.sum()),
        )
    # Edge cut-offs: |r| > max(threshold, critical r of the set's own df).
    cut_real = [max(t, critical_r(df_real, alpha)) for t in ts]
    cut_syn = [max(t, critical_r(df_syn, alpha)) for t in ts]

    d = real.shape[1]
    n_real_edges = np.zeros(len(ts), dtype=np.int64)
    n_syn_edges = np.zeros(len(ts), dtype=np.int64)
    n_recovered = np.zeros(len(ts), dtype=np.int64)
    # Sums for the similarity of the upper triangles.
    s_x = s_y = s_xx = s_yy = s_xy = s_abs = 0.0
    n_pairs = d * (d - 1) // 2
    for lo, hi in _upper_blocks(d, _BLOCK_GENES):
        # rows lo:hi against columns lo:d; the pairs (i, j > i) of this block
        r_real = np.clip(z_real[:, lo:hi].T @ z_real[:, lo:], -1.0, 1.0)
        r_syn = np.clip(z_syn[:, lo:hi].T @ z_syn[:, lo:], -1.0, 1.0)
        upper = np.arange(lo, d)[None, :] > np.arange(lo, hi)[:, None]
        x, y = r_real[upper], r_syn[upper]
        s_x += float(x.sum())
        s_y += float(y.sum())
        s_xx += float(x @ x)
        s_yy += float(y @ y)
        s_xy += float(x @ y)
        s_abs += float(np.abs(x - y).sum())
        same_sign = (x * y) > 0
        if sign == "both":
            x, y = np.abs(x), np.abs(y)
        for k in range(len(ts)):
            e_real = x > cut_real[k]
            e_syn = y > cut_syn[k]
            n_real_edges[k] += int(np.count_nonzero(e_real))
            n_syn_edges[k] += int(np.count_nonzero(e_syn))
            n_recovered[k] += int(np.count_nonzero(e_real & e_syn & same_sign))

    similarity = mad = None
    if n_pairs:
        mad = s_abs / n_pairs
        var_x = s_xx / n_pairs - (s_x / n_pairs) ** 2
        var_y = s_yy / n_pairs - (s_y / n_pairs) ** 2
        cov = s_xy / n_pairs - (s_x / n_pairs) * (s_y / n_pairs)
        if var_x > 1e-15 and var_y > 1e-15:
            similarity = float(np.clip(cov / np.sqrt(var_x * var_y), -1.0, 1.0))
    edges = tuple(
        EdgeRecovery(
            scope=scope,
            threshold=t,
            n_pairs=n_pairs,
            real_edges=int(n_real_edges[k]),
            synthetic_edges=int(n_syn_edges[k]),
            recovered=int(n_recovered[k]),
        )
        for k, t in enumerate(ts)
    )
    return CoexpressionComparison(
        scope=scope, edges=edges, similarity=similarity, mean_abs_difference=mad, alpha=alpha, sign=sign
    )


def gene_connectivity(values: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Sum over the other genes of ``|r|`` (pooled, or class-centred with ``labels``).

    Used to pick the most connected genes for plots. Blockwise, ``O(block x d)``
    memory.

    Returns
    -------
    ndarray of float64, shape (d,)
    """
    z, _, _ = standardized(values, labels)
    d = z.shape[1]
    out = np.zeros(d)
    for lo, hi in _upper_blocks(d, _BLOCK_GENES):
        block = np.abs(z[:, lo:hi].T @ z[:, lo:])
        block[np.arange(lo, d)[None, :] <= np.arange(lo, hi)[:, None]] = 0.0
        out[lo:hi] += block.sum(axis=1)  # pairs (i, j > i) count for i ...
        out[lo:] += block.sum(axis=0)  # ... and for j
    return out
