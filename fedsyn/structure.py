"""Gene-gene structure for Private-PGM: private selection, budget, plaintext reference.

The star model measures only ``(gene, label)`` tables, so synthetic genes are
independent given the label. This module chooses, privately, which extra tables
to measure so that the model of :mod:`fedsyn.graph_model` (the label joined to
a tree over attributes) carries co-expression. Two structures are offered, both
plain functions of aggregate statistics that the computing servers obtain with
matrix products of the bin scores / one-hot bin indicators and the labels, plus
noise:

``"tree"`` (MST-style; McKenna, Milios, Miklau, "Winning the NIST contest: a
    scalable and general approach to differentially private synthetic data",
    JPC 2021): a maximum spanning tree of genes chosen by the exponential
    mechanism. Edge utility ``|G[a, b]|`` with ``G = S^T S`` the Gram matrix of
    the integer bin scores ``s = 2 b - 3`` in ``{-3, -1, 1, 3}`` (a Spearman-like
    statistic; one record moves each entry by at most 9). The MST of
    ``|G| + Gumbel(scale)`` (:func:`gumbel_mst`) has exactly the distribution of
    MST's ``d - 1`` rounds of the exponential mechanism over the edges that do
    not close a cycle (Gumbel-max trick; given the edges already taken, the
    remaining perturbed utilities are independent Gumbels truncated at the last
    maximum, whose arg-max is again exponential-mechanism distributed), so it
    costs ``d - 1`` rounds of ``epsilon_r``-bounded-range mechanisms:
    ``rho = (d - 1) epsilon_r^2 / 8``. Then every tree edge's ``4 x 4`` table is
    measured with Gaussian noise.
``"factor"``: ``k`` derived *factor attributes*. The servers release the Gram
    matrix ``G`` with Gaussian noise (Analyze Gauss, Dwork, Talwar, Thakurta,
    Zhang, STOC 2014); the release server removes the between-class part
    (from the noisy ``(gene, label)`` tables) and takes the top ``k``
    eigenvectors ``V`` (:func:`dp_factors`). The servers then compute
    ``z = S V`` (a product with a public matrix, no communication), bin every
    ``z_j`` into ``m`` quantile levels like a gene, and measure
    ``(z_j, label)``, the chain ``(z_j, z_{j-1})`` and every gene's table with
    its factor ``(gene, z_{f(g)})``, ``f(g) = argmax_j |V[g, j]| sqrt(lambda_j)``.
    In the fitted model each gene hangs off its factor: genes loading on the
    same factor are co-expressed, as in a module.

The privacy budget is stated as a list of :class:`Family` objects and turned
into noise scales by :func:`calibrate_families` (a stand-in using Gaussian
zero-concentrated DP; one function so that an exact accountant can replace it).
:func:`simulate` runs the whole plaintext reference (what the servers compute,
the noise, the selection and the release) for benchmarks and tests.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from . import reference
from .errors import ConfigError, InputError
from .factor import FACTOR_EDGE_MARGIN, GRAM_SHIFT, within_class_gram
from .graph_model import TreeFit, TreeMeasurements, TreeStructure, mirror_descent, reroot_at_center, sample, warm_start

logger = logging.getLogger(__name__)

__all__ = [
    "Family",
    "zcdp_rho",
    "calibrate_families",
    "model_families",
    "max_spanning_tree",
    "gumbel_mst",
    "random_tree",
    "dp_factors",
    "semicircle_edge",
    "CoexpressionConfig",
    "Release",
    "simulate",
]

Mechanism = Literal["gaussian", "gumbel_max"]
Model = Literal["star", "tree", "factor"]
Selection = Literal["gumbel_mst", "noisy_gram_mst", "random"]

# FACTOR_EDGE_MARGIN (a factor is kept only above this multiple of the noise edge), GRAM_SHIFT (the largest
# change one record makes to a Gram entry) and within_class_gram are the pipeline's (fedsyn.factor).


# ---------------------------------------------------------------------------
# Budget
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A family of released statistics that share one noise scale.

    Attributes
    ----------
    name : str
        Identifier (``"gene_label"``, ``"pair"``, ...).
    tables : int
        Gaussian: number of tables (or entries) in which one record changes
        exactly one cell. Gumbel-max: number of selection rounds.
    shift : float
        Gaussian: largest change of that cell (L-infinity, count units; 1 for
        counts). Gumbel-max: sensitivity of the utility.
    weight : float
        Relative share of the privacy budget (normalized over the families).
    mechanism : {"gaussian", "gumbel_max"}, default "gaussian"
    """

    name: str
    tables: int
    shift: float
    weight: float
    mechanism: Mechanism = "gaussian"

    def __post_init__(self) -> None:
        if self.tables < 0 or not self.shift >= 0 or not self.weight >= 0:
            raise ConfigError(f"family {self.name!r}: tables, shift and weight must be non-negative.")
        if self.mechanism not in ("gaussian", "gumbel_max"):
            raise ConfigError(f"family {self.name!r}: unknown mechanism {self.mechanism!r}.")


def zcdp_rho(epsilon: float, delta: float) -> float:
    """zCDP budget ``rho`` whose standard conversion gives ``(epsilon, delta)``.

    ``epsilon = rho + 2 sqrt(rho log(1/delta))`` (Bun & Steinke 2016, Prop. 1.3),
    solved for ``rho``: ``(sqrt(epsilon + log(1/delta)) - sqrt(log(1/delta)))^2``.

    >>> round(zcdp_rho(10.0, 1e-5), 4)
    1.5504
    """
    if not epsilon > 0 or not 0 < delta < 1:
        raise ConfigError(f"need epsilon > 0 and 0 < delta < 1, got {epsilon}, {delta}.")
    ld = math.log(1.0 / delta)
    return (math.sqrt(epsilon + ld) - math.sqrt(ld)) ** 2


def calibrate_families(families: Sequence[Family], epsilon: float, delta: float) -> dict[str, float]:
    """Noise scale of every family for a total ``(epsilon, delta)`` budget.

    Stand-in accountant (Gaussian zCDP): ``rho`` from :func:`zcdp_rho`; a
    family with normalized weight ``w`` gets ``rho_w = w * rho``;

    * Gaussian: ``sigma = shift * sqrt(tables / (2 rho_w))`` per cell (the
      ``tables`` cells one record touches, each moved by ``shift``, have L2
      sensitivity ``shift * sqrt(tables)``);
    * Gumbel-max (exponential mechanism by the Gumbel-max trick, ``tables``
      rounds): per-round ``epsilon_r = sqrt(8 rho_w / tables)``
      (``epsilon_r``-bounded range is ``epsilon_r^2 / 8``-zCDP, Cesar & Rogers
      2021) and Gumbel scale ``2 shift / epsilon_r``.

    Families of zero weight or zero tables get ``inf`` (not released).

    Returns
    -------
    dict
        ``name -> sigma`` (Gaussian) or ``name -> Gumbel scale`` (Gumbel-max).

    >>> s = calibrate_families([Family("a", 100, 1.0, 1.0)], 10.0, 1e-5)
    >>> round(s["a"], 3)
    5.679
    """
    names = [f.name for f in families]
    if len(set(names)) != len(names):
        raise ConfigError(f"family names must be unique: {names}.")
    total_w = sum(f.weight for f in families if f.tables > 0)
    if not total_w > 0:
        raise ConfigError("no family has a positive weight.")
    rho = zcdp_rho(epsilon, delta)
    out = {}
    for f in families:
        if f.tables == 0 or f.weight == 0:
            out[f.name] = math.inf
            continue
        rho_w = rho * f.weight / total_w
        if f.mechanism == "gaussian":
            out[f.name] = f.shift * math.sqrt(f.tables / (2.0 * rho_w))
        else:
            eps_r = math.sqrt(8.0 * rho_w / f.tables)
            out[f.name] = 2.0 * f.shift / eps_r
    return out


def model_families(
    model: Model,
    n_genes: int,
    *,
    n_factors: int = 2,
    weights: dict[str, float] | None = None,
) -> list[Family]:
    """The released families of a model and their default budget split.

    ``star``: ``label`` (1 table), ``gene_label`` (``d``).
    ``tree``: plus ``select`` (Gumbel-max, ``d - 1`` rounds, utility shift 9)
    and ``pair`` (``d - 1`` gene-gene tables).
    ``factor``: plus ``gram`` (the ``d (d - 1) / 2`` off-diagonal Gram entries,
    shift 9), ``factor_label`` (``k``) and ``pair`` (``d`` gene-factor tables
    and ``k - 1`` factor-factor tables).

    Gene 1-way tables are not measured: the ``(gene, label)`` tables imply them.
    """
    d = int(n_genes)
    k = int(n_factors)
    defaults = {
        "star": {"label": 0.02, "gene_label": 0.98},
        "tree": {"label": 0.02, "gene_label": 0.49, "select": 0.14, "pair": 0.35},
        "factor": {"label": 0.02, "gene_label": 0.49, "gram": 0.14, "factor_label": 0.0, "pair": 0.35},
    }
    if model not in defaults:
        raise ConfigError(f"unknown model {model!r}; expected one of {sorted(defaults)}.")
    w = dict(defaults[model])
    if weights:
        unknown = set(weights) - set(w)
        if unknown:
            raise ConfigError(f"model {model!r} has no families {sorted(unknown)}; it has {sorted(w)}.")
        w.update(weights)
    fam = [Family("label", 1, 1.0, w["label"]), Family("gene_label", d, 1.0, w["gene_label"])]
    if model == "tree":
        fam += [
            Family("select", max(d - 1, 0), GRAM_SHIFT, w["select"], "gumbel_max"),
            Family("pair", max(d - 1, 0), 1.0, w["pair"]),
        ]
    elif model == "factor":
        if w["factor_label"] == 0:
            # measured in the same family as the genes' tables
            fam[1] = Family("gene_label", d + k, 1.0, w["gene_label"])
        fam += [
            Family("gram", d * (d - 1) // 2, GRAM_SHIFT, w["gram"]),
            Family("factor_label", k if w["factor_label"] > 0 else 0, 1.0, w["factor_label"]),
            Family("pair", d + k - 1, 1.0, w["pair"]),
        ]
    return fam


# ---------------------------------------------------------------------------
# Selection (plain functions of noisy statistics)
# ---------------------------------------------------------------------------


def max_spanning_tree(weights: np.ndarray, *, root: int = 0) -> np.ndarray:
    """Maximum spanning tree of a dense symmetric weight matrix (Prim).

    Ties go to the lower index, so the result is a deterministic function of
    ``weights``. ``O(d^2)`` time: ``d`` rounds, each an arg-max over ``d``
    candidates -- what an MPC implementation would do with secret weights,
    revealing only the chosen edges.

    Parameters
    ----------
    weights : ndarray (d, d)
        Symmetric; the diagonal is ignored.
    root : int, default 0

    Returns
    -------
    ndarray of int64 (d,)
        ``parent[g]``, ``-1`` for the root.

    >>> w = np.array([[0, 5, 1], [5, 0, 2], [1, 2, 0]], float)
    >>> max_spanning_tree(w).tolist()
    [-1, 0, 1]
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise InputError(f"weights must be a square matrix, got shape {w.shape}.")
    d = w.shape[0]
    parent = np.full(d, -1, dtype=np.int64)
    if d == 0:
        return parent
    in_tree = np.zeros(d, dtype=bool)
    in_tree[root] = True
    best = w[root].copy()
    best_from = np.full(d, root, dtype=np.int64)
    best[root] = -np.inf
    for _ in range(d - 1):
        cand = np.where(in_tree, -np.inf, best)
        v = int(np.argmax(cand))
        parent[v] = best_from[v]
        in_tree[v] = True
        better = (w[v] > best) & ~in_tree
        best[better] = w[v][better]
        best_from[better] = v
    return parent


def gumbel_mst(utility: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """MST of ``utility + Gumbel(scale)``: MST's exponential-mechanism tree selection.

    Parameters
    ----------
    utility : ndarray (d, d)
        Symmetric edge utilities with sensitivity ``shift`` (e.g. ``|G|``).
    scale : float
        Gumbel scale ``2 shift / epsilon_r`` (:func:`calibrate_families`).
    rng : numpy.random.Generator
        Source of the Gumbel noise (inside MPC in a deployment).

    Returns
    -------
    ndarray of int64 (d,)
        Tree parents (root 0).
    """
    u = np.asarray(utility, dtype=np.float64)
    d = u.shape[0]
    g = np.zeros((d, d))
    iu = np.triu_indices(d, 1)
    g[iu] = rng.gumbel(0.0, scale, size=iu[0].size) if math.isfinite(scale) else 0.0
    g = g + g.T
    return max_spanning_tree(u + g)


def random_tree(d: int, rng: np.random.Generator) -> np.ndarray:
    """A data-independent random tree (random recursive tree on a random order)."""
    perm = rng.permutation(d)
    parent = np.full(d, -1, dtype=np.int64)
    for i in range(1, d):
        parent[perm[i]] = perm[rng.integers(0, i)]
    return parent


def semicircle_edge(d: int, sigma: float) -> float:
    """Largest eigenvalue of a symmetric ``d x d`` Gaussian noise matrix, ~ ``2 sigma sqrt(d)``.

    A factor of the noisy Gram matrix is kept only if its eigenvalue exceeds
    this edge (of the semicircle law): below it, eigenvectors are noise.
    """
    return 2.0 * float(sigma) * math.sqrt(max(int(d), 1))


def dp_factors(gram_within: np.ndarray, n_factors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top eigenvectors of a (noisy, within-class) Gram matrix and gene attachments.

    Returns
    -------
    loadings : ndarray (d, k)
        Unit eigenvectors, sign fixed so that the largest entry is positive.
    eigenvalues : ndarray (k,)
    attach : ndarray of int64 (d,)
        ``argmax_j |loadings[g, j]| * sqrt(max(eigenvalue_j, 0))``.
    """
    c = np.asarray(gram_within, dtype=np.float64)
    c = (c + c.T) / 2
    k = int(n_factors)
    if not 1 <= k <= c.shape[0]:
        raise InputError(f"n_factors must lie in 1..{c.shape[0]}, got {k}.")
    w, v = np.linalg.eigh(c)
    w, v = w[::-1][:k], v[:, ::-1][:, :k]
    sign = np.sign(v[np.abs(v).argmax(axis=0), np.arange(k)])
    v = v * np.where(sign == 0, 1.0, sign)[None, :]
    attach = np.argmax(np.abs(v) * np.sqrt(np.maximum(w, 0.0))[None, :], axis=1)
    return v, w, attach.astype(np.int64)


# ---------------------------------------------------------------------------
# Plaintext reference of the whole pipeline
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CoexpressionConfig:
    """Options of :func:`simulate`.

    Attributes
    ----------
    model : {"star", "tree", "factor"}
    epsilon, delta : float
        Total budget (``epsilon = inf``: exact tables, no noise; the ceiling).
    selection : {"gumbel_mst", "noisy_gram_mst", "random"}
        How ``tree`` picks edges: MST's exponential mechanism on ``|G|``; the
        MST of a Gaussian-noised within-class ``|G|``; a random tree.
    n_factors : int
        ``k`` for ``factor``.
    factor_levels : int
        Quantile levels ``m`` of each factor attribute.
    pair_label : bool
        Measure ``(a, parent, label)`` instead of ``(a, parent)``.
    weights : dict, optional
        Overrides of :func:`model_families`' budget split.
    iterations : int
        Mirror-descent steps.
    warm : bool
        Start mirror descent from :func:`fedsyn.graph_model.warm_start` (else
        from the uniform distribution, as mbi).
    smoothing : {"linear+js", "linear", "js", "none"}
        Denoising of the pair tables in the warm start.
    gate : float
        Associations in the warm start are kept only beyond this many noise
        standard deviations (:func:`fedsyn.graph_model.warm_start`).
    shrink : float
        Strength of the shrinkage of pair associations in the warm start
        (1: positive-part James-Stein; larger: fewer, surer associations).
    joint : bool
        ``factor``: one attribute with ``m^k`` states (the product of the
        ``k`` factors' levels) that every gene hangs off, instead of ``k``
        attributes in a chain with each gene on its own factor.
    growth : float
        Step-size growth after an accepted step (:func:`fedsyn.graph_model.mirror_descent`).
    """

    model: Model = "factor"
    epsilon: float = 10.0
    delta: float = 1e-5
    selection: Selection = "gumbel_mst"
    n_factors: int = 2
    factor_levels: int = 8
    pair_label: bool = False
    weights: dict | None = None
    iterations: int = 1000
    growth: float = 1.01
    warm: bool = True
    smoothing: str = "linear+js"
    joint: bool = False
    shrink: float = 1.0
    gate: float = 2.0


@dataclass(frozen=True)
class Release:
    """Result of :func:`simulate`."""

    bins: np.ndarray  # (n, d) synthetic gene bins
    labels: np.ndarray  # (n,)
    fit: TreeFit = field(repr=False)
    sigmas: dict = field(default_factory=dict)
    structure_parent: np.ndarray | None = field(default=None, repr=False)
    timings: dict = field(default_factory=dict)


def _noise(shape, sigma: float, rng: np.random.Generator):
    if not math.isfinite(sigma) or sigma == 0:
        return np.zeros(shape)
    return rng.normal(0.0, sigma, size=shape)


def simulate(
    bins: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    config: CoexpressionConfig,
    *,
    rng: np.random.Generator,
    n_records: int | None = None,
) -> Release:
    """Plaintext reference: servers' statistics + noise, selection, fit, sample.

    Parameters
    ----------
    bins : ndarray of int (n, d)
        Quartile bins of the pooled training records (``reference.bin_statistics``).
    labels : ndarray of int (n,)
    n_labels : int
    config : CoexpressionConfig
    rng : numpy.random.Generator
        Noise, selection and sampling randomness.
    n_records : int, optional
        Synthetic records to draw (default ``n``).

    Returns
    -------
    Release
        Synthetic gene bins (factor attributes dropped), labels, the fit and the
        noise scales used.
    """
    b = np.asarray(bins, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    n, d = b.shape
    cfg = config
    exact = not math.isfinite(cfg.epsilon)
    fams = model_families(cfg.model, d, n_factors=cfg.n_factors, weights=cfg.weights)
    if exact:
        sig = {f.name: 0.0 for f in fams}
    else:
        sig = calibrate_families(fams, cfg.epsilon, cfg.delta)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    # --- what every model measures: label and (gene, label) tables
    label_counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    gene_label = reference.attr_label_tables(b, y, n_labels, 4)  # (d, 4, L)
    noisy_label = label_counts + _noise(label_counts.shape, sig["label"], rng)
    noisy_gl = gene_label + _noise(gene_label.shape, sig["gene_label"], rng)
    total = float(n) if exact else float(max(noisy_label.sum(), 1.0))
    attrs = b
    parent_scores = None
    sizes = [4] * d
    parent = np.full(d, -1, dtype=np.int64)
    attr_label = [noisy_gl[g] for g in range(d)]
    pairs: list = [None] * d
    if cfg.model == "tree":
        gram = reference.score_gram(b).astype(np.float64)
        if cfg.selection == "gumbel_mst":
            parent = gumbel_mst(np.abs(gram), 0.0 if exact else sig["select"], rng)
        elif cfg.selection == "noisy_gram_mst":
            # the "select" family's budget spent as a Gaussian release of the Gram matrix
            s_gauss = 0.0 if exact else calibrate_families(
                [Family("g", d * (d - 1) // 2, GRAM_SHIFT, 1.0)], cfg.epsilon, cfg.delta
            )["g"] / math.sqrt(_share(fams, "select"))
            noisy = gram + _sym_noise(d, s_gauss, rng)
            parent = max_spanning_tree(np.abs(within_class_gram(noisy, noisy_gl, noisy_label)))
        elif cfg.selection == "random":
            parent = random_tree(d, rng)
        else:
            raise ConfigError(f"unknown selection {cfg.selection!r}.")
        parent = reroot_at_center(parent)
    elif cfg.model == "factor":
        gram = reference.score_gram(b).astype(np.float64)
        noisy = gram + _sym_noise(d, sig["gram"], rng)
        np.fill_diagonal(noisy, 5.0 * total)  # diagonal not released: its quartile expectation
        v, lam, attach = dp_factors(within_class_gram(noisy, noisy_gl, noisy_label), cfg.n_factors)
        found = int(np.sum(lam > FACTOR_EDGE_MARGIN * semicircle_edge(d, 0.0 if exact else sig["gram"])))
        k = cfg.n_factors
        m = cfg.factor_levels
        if found < k:
            logger.info("factor model: %d of %d factors above the noise edge", found, k)
        # only factors that stand out of the noise are measured; with none, the
        # model is the star
        k = min(k, found)
        if k == 0 and not exact:
            # no factor: spend the pair budget on a second measurement of the
            # (gene, label) tables and combine the two by inverse variance
            # (what Private-PGM does with two measurements of one table)
            s1, s2 = sig["gene_label"], sig["pair"]
            second = gene_label + _noise(gene_label.shape, s2, rng)
            w1, w2 = 1.0 / s1**2, 1.0 / s2**2
            noisy_gl = (w1 * noisy_gl + w2 * second) / (w1 + w2)
            sig = dict(sig, gene_label=1.0 / math.sqrt(w1 + w2), pair=math.inf)
            attr_label = [noisy_gl[g] for g in range(d)]
        if 0 < k < cfg.n_factors:
            v = v[:, :k]
            attach = np.argmax(np.abs(v) * np.sqrt(np.maximum(lam[:k], 0.0))[None, :], axis=1).astype(np.int64)
        z = reference.factor_bins(b, v[:, :k], m) if k else None  # (n, k), phase B
        if k == 0:
            z = np.zeros((n, 0), dtype=np.int64)
            attach = np.zeros(d, dtype=np.int64)
            sizes_z = []
        elif cfg.joint:
            assert z is not None
            z = reference.joint_levels(z, m)
            attach = np.zeros(d, dtype=np.int64)
            levels = np.stack(np.unravel_index(np.arange(m**k), (m,) * k), axis=1) - (m - 1) / 2.0  # (m^k, k)
            parent_scores = np.zeros((d + 1, m**k, k))
            parent_scores[:d] = levels[None]
            parent_scores[d, 0, 0] = 1.0
            sizes_z = [m**k]
            k = 1
        else:
            sizes_z = [m] * k
        attrs = np.concatenate([b, z], axis=1)
        sizes = [4] * d + sizes_z
        if k == 0:
            parent = np.full(d, -1, dtype=np.int64)
        else:
            parent = np.concatenate([d + attach, [-1], d + np.arange(k - 1)]).astype(np.int64)
        assert z is not None
        zl = reference.attr_label_tables(z, y, n_labels, max(sizes_z, default=1))
        s_zl = sig["factor_label"] if math.isfinite(sig["factor_label"]) else sig["gene_label"]
        attr_label += [zl[j, : sizes_z[j]] + _noise((sizes_z[j], n_labels), s_zl, rng) for j in range(k)]
        pairs += [None] * k
    elif cfg.model != "star":
        raise ConfigError(f"unknown model {cfg.model!r}.")
    times["select"] = time.perf_counter() - t0
    a = attrs.shape[1]
    structure = TreeStructure(sizes=tuple(sizes), parent=tuple(int(p) for p in parent), n_labels=n_labels)
    pair_label = None
    if cfg.model != "star":
        edges = [(i, int(parent[i])) for i in range(a) if parent[i] >= 0]
        if cfg.pair_label:
            tabs = reference.pair_tables(attrs, edges, labels=y, n_labels=n_labels, n_bins=max(sizes))
            pair_label = [None] * a
            for (i, p), t in zip(edges, tabs):
                t = t[: sizes[i], : sizes[p]]
                pair_label[i] = t + _noise(t.shape, sig["pair"], rng)
        else:
            tabs = reference.pair_tables(attrs, edges, n_bins=max(sizes))
            if parent_scores is not None:
                ps = np.zeros((a, max(sizes), parent_scores.shape[2]))
                ps[:, : parent_scores.shape[1]] = parent_scores
                parent_scores = ps
            for (i, p), t in zip(edges, tabs):
                t = t[: sizes[i], : sizes[p]]
                pairs[i] = t + _noise(t.shape, sig["pair"], rng)
    stddev = {"label": sig["label"], "attr_label": sig["gene_label"], "pair": sig.get("pair", 0.0)}
    stddev["pair_label"] = stddev["pair"]
    if cfg.model == "factor" and math.isfinite(sig["factor_label"]) and sig["factor_label"] != sig["gene_label"]:
        logger.warning("factor_label noise differs from gene_label; the fit uses the gene_label weight for both")
    meas = TreeMeasurements.from_tables(
        structure,
        label=noisy_label,
        attr_label=attr_label,
        pair=pairs if not cfg.pair_label else [None] * a,
        pair_label=pair_label,
        total=total,
        stddev=stddev,
    )
    t1 = time.perf_counter()
    init = (
        warm_start(
            structure, meas, smoothing=cfg.smoothing, parent_scores=parent_scores, shrink=cfg.shrink, gate=cfg.gate
        )
        if cfg.warm
        else None
    )
    fit = mirror_descent(structure, meas, iterations=cfg.iterations, growth=cfg.growth, init=init)
    times["fit"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    syn, syn_y = sample(fit, n if n_records is None else int(n_records), rng=rng)
    times["sample"] = time.perf_counter() - t2
    return Release(
        bins=syn[:, :d],
        labels=syn_y,
        fit=fit,
        sigmas=sig,
        structure_parent=np.asarray(parent),
        timings=times,
    )


def _share(fams: Sequence[Family], name: str) -> float:
    tot = sum(f.weight for f in fams if f.tables > 0)
    return next(f.weight for f in fams if f.name == name) / tot


def _sym_noise(d: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    e = np.zeros((d, d))
    if sigma > 0 and math.isfinite(sigma):
        iu = np.triu_indices(d, 1)
        e[iu] = rng.normal(0.0, sigma, size=iu[0].size)
        e = e + e.T
    return e
