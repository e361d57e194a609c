"""The factor model of gene-gene co-expression: what it releases, and the public step between its phases.

The star model (the paper's) measures only (gene, label) tables, so synthetic
genes are independent given the label. The factor model (``docs/coexpression.md``)
adds one derived attribute, the *factor level* of every record, and measures how
every gene co-varies with it; Private-PGM then fits the junction tree "label +
factor + every gene below the factor" (:mod:`fedsyn.graph_model`).

With ``b`` the bins (n, d) of the profile, ``S = 2 b - 3`` the integer bin
scores in ``{-3, -1, 1, 3}``, ``y`` the labels:

Phase A (with the profile's tables), released with grid noise
    ``gram``: the ``p (p - 1) / 2`` off-diagonal entries of ``G = S_A^T S_A``
    for ``p`` public *anchor* genes ``A`` (:func:`anchor_genes`: evenly spaced
    in column order, a data-independent choice; all genes if ``d <= p``),
    upper triangle, row-major (:func:`upper_index`). One record adds
    ``S_a S_b`` to entry ``(a, b)``: at most :data:`GRAM_SHIFT` in absolute
    value. The noisy Gram matrix, the label table and the (gene, label) tables
    are opened to the three servers (they are DP releases) and to the release
    server.
Between the phases (public: every server computes it from the phase-A release)
    :func:`plan_factor`: the top eigenvector ``v`` of the noisy within-class
    Gram matrix of the anchors (off-diagonal part, between-class part removed with
    the noisy tables), kept only if its eigenvalue stands out of the noise
    (``FACTOR_EDGE_MARGIN`` times :func:`noise_edge`: the Gram noise's
    semicircle edge ``2 sigma sqrt(p)`` and the error the noisy tables add, by
    simulation);
    the public loadings ``V = round(v 2^12)`` (zero off the anchors) and three
    public thresholds: the
    quartiles of a normal with the mean and variance of ``z = S V`` estimated
    from the noisy tables and Gram matrix. All of it is post-processing of DP
    releases; server 0's plan is used by all three (:func:`agree`), so numerical
    differences between hosts cannot split the servers.
Phase B, released with grid noise
    factor found: ``factor_label`` (4, L), the (factor level, label) table, and
    ``gene_factor`` (d, 4, 4), the (gene bin, factor level) tables, where the
    level of a record is ``sum_j [z >= t_j]`` (:func:`fedsyn.reference.factor_levels`);
    no factor: ``two_way_again`` (d, 4, L), a second measurement of the (gene,
    label) tables with the ``pair`` noise (the release combines both by inverse
    variance). Either way one record changes one cell by one in ``d`` tables.

Why anchors: the Gram matrix's noise grows with its number of entries, so the
semicircle edge grows as ``p^1.5`` while a module's eigenvalue grows as ``p``;
at 978 genes and epsilon 10 the top factor of the simulated BRCA-like data did
not clear the edge with all genes (eigenvalue 0.88e6 against 0.90e6) and cleared
it twice over with 200 anchors. The factor is defined by the anchors, but every
gene's (gene, factor) table is measured. It also makes the MPC cost of the Gram
``p^2`` instead of ``d^2``.

The exact statistics are :func:`fedsyn.reference.factor_tables`; the accounting
families are in :func:`fedsyn.accounting.release_templates` (``gram``,
``pair``, and one more count table).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError, ProtocolError

__all__ = ["GRAM_SHIFT", "LOADING_FRAC_BITS", "FACTOR_EDGE_MARGIN", "DEFAULT_ANCHORS", "SCORES", "FactorPlan",
           "anchor_genes", "upper_index", "within_class_gram", "full_gram", "noise_edge", "plan_factor", "agree"]

#: Largest change of one Gram entry by one record (``|S_a S_b| <= 9``).
GRAM_SHIFT = 9
#: Fixed-point fractional bits of the public loadings.
LOADING_FRAC_BITS = 12
#: A factor is kept only if its eigenvalue exceeds this many times :func:`noise_edge` (the top eigenvalue of
#: noise fluctuates on the Tracy-Widom scale, and a noise factor attached to every gene costs much more than a
#: weak real one).
FACTOR_EDGE_MARGIN = 1.1
#: Integer score of each bin.
SCORES = np.array([-3, -1, 1, 3], dtype=np.int64)
#: Default number of anchor genes that define the factor (:func:`anchor_genes`).
DEFAULT_ANCHORS = 200
#: Standard normal quartiles: the factor's level thresholds are ``mean + q sd``.
_NORMAL_QUARTILES = (-0.6744897501960817, 0.0, 0.6744897501960817)


def anchor_genes(n_genes: int, n_anchors: int = DEFAULT_ANCHORS) -> np.ndarray:
    """The ``p = min(d, n_anchors)`` anchor genes: evenly spaced column indices (public, data-independent)."""
    d, p = int(n_genes), min(int(n_genes), int(n_anchors))
    if p < 1:
        raise InputError(f"the factor model needs at least one anchor gene, got {n_anchors}.")
    return np.unique(np.round(np.linspace(0, d - 1, p)).astype(np.int64))


def upper_index(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the released Gram entries (upper triangle without the diagonal, row-major)."""
    return np.triu_indices(int(d), 1)


@dataclass(frozen=True)
class FactorPlan:
    """The public outcome of the step between the factor model's two phases.

    Attributes
    ----------
    found : bool
        Whether a factor stands out of the noise; if not, phase B measures the
        (gene, label) tables again instead.
    loadings_fp : ndarray of int64, shape (d,)
        ``round(v 2^12)`` (zeros if not found).
    thresholds_fp : ndarray of int64, shape (3,)
        Level thresholds on ``z = S V`` (increasing).
    eigenvalue, edge : float
        The top eigenvalue of the noisy within-class Gram matrix and the gate
        it had to pass.
    """

    found: bool
    loadings_fp: np.ndarray
    thresholds_fp: np.ndarray
    eigenvalue: float
    edge: float

    @property
    def z_bound(self) -> int:
        """``max |z|`` over all records: ``3 sum |V|``."""
        return 3 * int(np.abs(self.loadings_fp).sum())

    @property
    def compare_bits(self) -> int:
        """Width that holds ``z - t_j`` for every record and threshold (two's complement)."""
        span = self.z_bound + int(np.abs(self.thresholds_fp).max(initial=0))
        return max(8, span.bit_length() + 2)

    def to_public(self) -> dict:
        """JSON-able form (what the servers pass to the release server)."""
        return {"found": bool(self.found), "loadings_fp": [int(v) for v in self.loadings_fp],
                "thresholds_fp": [int(t) for t in self.thresholds_fp], "eigenvalue": float(self.eigenvalue),
                "edge": float(self.edge)}

    @classmethod
    def from_public(cls, data: dict) -> "FactorPlan":
        try:
            return cls(found=bool(data["found"]), loadings_fp=np.asarray(data["loadings_fp"], dtype=np.int64),
                       thresholds_fp=np.asarray(data["thresholds_fp"], dtype=np.int64),
                       eigenvalue=float(data["eigenvalue"]), edge=float(data["edge"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed factor plan ({exc}).") from exc

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update(b"1" if self.found else b"0")
        h.update(np.ascontiguousarray(self.loadings_fp, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(self.thresholds_fp, dtype="<i8").tobytes())
        return h.hexdigest()


def _tables(two_way: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    t = np.asarray(two_way, dtype=np.float64)
    lab = np.asarray(label, dtype=np.float64)
    if t.ndim != 3 or t.shape[1] != 4 or t.shape[2] != lab.shape[0]:
        raise InputError(f"(gene, label) tables {t.shape} do not match a label table {lab.shape}.")
    return t, lab, float(max(lab.sum(), 1.0))


def within_class_gram(gram: np.ndarray, two_way: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``G - sum_l s_l s_l^T / n_l``: the between-class part removed using the (noisy) tables (post-processing).

    ``s_l[g] = sum_b score_b T[g, b, l]`` are the class sums of the scores.
    """
    t, lab, _ = _tables(two_way, label)
    sums = np.einsum("b,gbl->gl", SCORES.astype(np.float64), t)
    return np.asarray(gram, dtype=np.float64) - (sums / np.maximum(lab, 1.0)[None, :]) @ sums.T


def full_gram(upper: np.ndarray, two_way: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The symmetric Gram matrix from its released upper triangle; the diagonal (``sum_i S_ig^2``,
    not released) is estimated from the noisy (gene, label) tables."""
    t, lab, _ = _tables(two_way, label)
    d = t.shape[0]
    u = np.asarray(upper, dtype=np.float64)
    if u.shape != (d * (d - 1) // 2,):
        raise InputError(f"the Gram entries have shape {u.shape}, expected ({d * (d - 1) // 2},).")
    g = np.zeros((d, d))
    g[upper_index(d)] = u
    g = g + g.T
    g[np.diag_indices(d)] = np.einsum("b,gb->g", (SCORES**2).astype(np.float64), t.sum(axis=2))
    return g


#: Draws of the noise-only matrix in :func:`noise_edge` (the largest top eigenvalue is the gate).
NULL_DRAWS = 8


def noise_edge(p: int, gram_sigma: float, table_sigma: float, class_sums: np.ndarray, class_counts: np.ndarray,
               *, n_records: float = 0.0) -> float:
    """How large the top eigenvalue of the noisy within-class Gram matrix gets without co-expression.

    The matrix (:func:`plan_factor`) is the off-diagonal part of the noisy Gram
    matrix (its diagonal, about ``5 N`` a gene, shifts every eigenvalue alike and
    carries no co-expression) minus the between-class part estimated from the
    noisy tables (:func:`within_class_gram`). Without co-expression it is noise:

    * the Gram entries' noise, symmetric, standard deviation ``gram_sigma`` (alone,
      top eigenvalue about ``2 gram_sigma sqrt(p)``, the semicircle edge), plus the
      sampling spread of the entries of independent genes, ``sqrt(25 N)``
      (``E[S^2] = 5``; negligible against the noise at epsilon <= 100);
    * the error of the between-class part: with ``s_l`` the class sums of the
      scores and ``e_l`` their table noise (variance ``20 table_sigma^2`` a
      coordinate, ``sum_b score_b^2 = 20``), ``-sum_l (s_l e_l^T + e_l s_l^T + e_l e_l^T) / n_l``.

    The edge is the largest top eigenvalue of their sum over :data:`NULL_DRAWS`
    Gaussian draws with a fixed public seed (every server gets the same number),
    the noisy class sums standing in for the true ones. Gating on the semicircle
    edge alone let a "factor" of table noise through in every run at epsilon 1 and
    978 genes (within-class edge precision 0.05).
    """
    from scipy.linalg import eigh

    lab = np.maximum(np.asarray(class_counts, dtype=np.float64), 1.0)
    sums = np.asarray(class_sums, dtype=np.float64)
    rng = np.random.default_rng(20261128)  # public: the edge is a deterministic function of public values
    ts, gs = float(table_sigma), math.sqrt(float(gram_sigma) ** 2 + 25.0 * max(float(n_records), 0.0))
    top = 0.0
    for _ in range(NULL_DRAWS):
        m = np.triu(rng.normal(0.0, gs, size=(p, p)), 1)
        m = m + m.T
        if ts > 0:
            e = rng.normal(0.0, math.sqrt(20.0) * ts, size=(p, lab.size))
            cross = (sums / lab[None, :]) @ e.T
            m = m - cross - cross.T - (e / lab[None, :]) @ e.T
        top = max(top, float(eigh(m, eigvals_only=True, subset_by_index=[p - 1, p - 1])[0]))
    return top


def plan_factor(gram_upper: np.ndarray, two_way: np.ndarray, label: np.ndarray, *, gram_sigma: float,
                table_sigma: float = 0.0, n_anchors: int = DEFAULT_ANCHORS) -> FactorPlan:
    """The public factor step: loadings, gate and level thresholds from the phase-A release.

    Parameters
    ----------
    gram_upper : ndarray, shape (p (p - 1) / 2,)
        The noisy off-diagonal Gram entries of the anchors.
    two_way : ndarray, shape (d, 4, L)
        The noisy (gene, label) tables.
    label : ndarray, shape (L,)
        The noisy label table.
    gram_sigma : float
        Noise of the Gram entries (0: exact statistics, tests only).
    table_sigma : float, default 0
        Noise of the label and (gene, label) tables (enters the gate, :func:`noise_edge`).
    n_anchors : int, default 200
        See :func:`anchor_genes`.

    Returns
    -------
    FactorPlan
    """
    from scipy.linalg import eigh

    t_all, lab, total = _tables(two_way, label)
    d = t_all.shape[0]
    anchors = anchor_genes(d, n_anchors)
    t, p = t_all[anchors], anchors.size
    pooled = full_gram(gram_upper, t, lab)
    off = pooled - np.diag(np.diag(pooled))  # the diagonal (~5 N each) only shifts the spectrum: not structure
    within = within_class_gram(off, t, lab)
    within = (within + within.T) / 2
    sums = np.einsum("b,gbl->gl", SCORES.astype(np.float64), t)
    edge = FACTOR_EDGE_MARGIN * noise_edge(p, gram_sigma, table_sigma, sums, lab, n_records=total)
    if p < 2:
        return FactorPlan(False, np.zeros(d, np.int64), np.zeros(3, np.int64), 0.0, edge)
    w, v = eigh(within, subset_by_index=[p - 1, p - 1])
    lam, vec = float(w[-1]), v[:, -1]
    top = int(np.argmax(np.abs(vec)))
    vec = vec if vec[top] >= 0 else -vec
    found = lam > edge and lam > 0
    if not found:
        return FactorPlan(False, np.zeros(d, np.int64), np.zeros(3, np.int64), lam, edge)
    v_fp = np.round(vec * (1 << LOADING_FRAC_BITS)).astype(np.int64)
    loadings = np.zeros(d, np.int64)
    loadings[anchors] = v_fp
    vf = v_fp.astype(np.float64)
    mean_s = np.einsum("b,gb->g", SCORES.astype(np.float64), t.sum(axis=2)) / total
    mu = float(vf @ mean_s)
    var = max(float(vf @ pooled @ vf) / total - mu * mu, 1.0)
    bound = 3 * int(np.abs(v_fp).sum())
    thr = np.clip(np.round([mu + q * math.sqrt(var) for q in _NORMAL_QUARTILES]), -bound - 1, bound + 1)
    return FactorPlan(True, loadings, np.asarray(thr, dtype=np.int64), lam, edge)


def agree(own: FactorPlan, first: FactorPlan) -> FactorPlan:
    """Adopt server 0's plan after checking it is the one this server computed, up to rounding.

    The plan is a public function of public values, so any plan keeps the
    guarantee; the check only catches servers computing on different releases.
    Loadings may differ by a few units where floating point differs between
    hosts (different LAPACK builds); more is a :class:`ProtocolError`.
    """
    if own.found != first.found and abs(own.eigenvalue - own.edge) > 1e-6 * max(abs(own.edge), 1.0):
        raise ProtocolError("the servers disagree on whether a factor was found: they computed on different "
                            "phase-A releases.")
    if own.found and first.found:
        if own.loadings_fp.shape != first.loadings_fp.shape or np.abs(own.loadings_fp - first.loadings_fp).max() > 4:
            raise ProtocolError("the servers computed different factor loadings from the same release.")
        scale = max(1.0, float(np.abs(first.thresholds_fp).max()))
        if np.abs(own.thresholds_fp - first.thresholds_fp).max() > 1e-3 * scale + 4:
            raise ProtocolError("the servers computed different factor level thresholds from the same release.")
    return first
